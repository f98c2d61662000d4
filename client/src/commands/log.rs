//! `provenix log checkpoint|proof|consistency`: a cache's transparency log
//! read and checked as any tlog-tiles client would (client/src/tlog.rs).

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use provenix_provenance::tlog::entry::Entry;
use serde_json::json;

use super::client_for;
use crate::tlog::{show, Continuity, LogReader};

/// Witnesses the user requires, in place of those the server names in
/// `cache info`: a server cannot then drop a witness that would refuse a
/// forked checkpoint.
#[derive(Args, Clone, Default)]
pub struct WitnessPins {
    /// A witness's verifier key to require cosignatures from, in place of
    /// those the server names. Repeatable.
    #[arg(long = "witness", value_name = "VKEY")]
    pub witnesses: Vec<String>,
    /// How many of the witnesses must have cosigned (default: all given
    /// with --witness, or the server's policy).
    #[arg(long)]
    pub quorum: Option<usize>,
}

impl WitnessPins {
    /// The log read with these witnesses required.
    pub async fn reader(&self, api: crate::api::ApiClient, cache: &str) -> Result<LogReader> {
        let mut log = LogReader::new(api, cache).await?;
        log.pin_witnesses(self.witnesses.clone(), self.quorum);
        Ok(log)
    }
}

#[derive(Subcommand)]
pub enum LogCommand {
    /// Follow the log from where the last run stopped and report entries
    /// by identity (exit codes for cron: docs/transparency-log.md).
    Monitor(super::log_monitor::MonitorArgs),
    /// The log's current checkpoint, verified with its key and checked
    /// consistent with the last one this client saw.
    Checkpoint {
        /// `[SERVER:]CACHE`
        cache: String,
        #[command(flatten)]
        pins: WitnessPins,
        #[arg(long)]
        json: bool,
    },
    /// Entry INDEX and its inclusion proof in the current checkpoint.
    Proof {
        cache: String,
        index: u64,
        #[command(flatten)]
        pins: WitnessPins,
        #[arg(long)]
        json: bool,
    },
    /// The consistency proof from the tree of OLD entries to the current
    /// one, and the root the tree had at OLD.
    Consistency {
        cache: String,
        old: u64,
        #[command(flatten)]
        pins: WitnessPins,
        #[arg(long)]
        json: bool,
    },
}

fn say_continuity(origin: &str, c: &Continuity) {
    match c {
        Continuity::First => eprintln!("First checkpoint seen of {origin}; remembered."),
        Continuity::ConsistentWith(n) => {
            eprintln!("Consistent with the checkpoint of {n} entries seen before; remembered.")
        }
    }
}

pub async fn run(command: LogCommand) -> Result<()> {
    match command {
        LogCommand::Monitor(args) => return super::log_monitor::run(args).await,
        LogCommand::Checkpoint { cache, json, pins } => {
            let (api, _, cache) = client_for(&cache)?;
            let mut log = pins.reader(api, &cache).await?;
            let (cp, continuity) = log.checkpoint().await?;
            if json {
                let out = json!({
                    "origin": cp.origin,
                    "size": cp.size,
                    "root": show(&cp.root),
                    "checkpoint": String::from_utf8_lossy(&cp.note),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print!("{}", String::from_utf8_lossy(&cp.note));
                say_continuity(&log.origin, &continuity);
            }
        }
        LogCommand::Proof {
            cache,
            index,
            json,
            pins,
        } => {
            let (api, _, cache) = client_for(&cache)?;
            let mut log = pins.reader(api, &cache).await?;
            let (cp, continuity) = log.checkpoint().await?;
            let entry = log.entry(&cp, index).await?;
            let proof = log
                .read(&cp, |r| tlog_tiles::prove_record(cp.size, index, r))
                .await?;
            let decoded = Entry::decode(&entry).ok();
            if json {
                let out = json!({
                    "origin": cp.origin,
                    "size": cp.size,
                    "root": show(&cp.root),
                    "index": index,
                    "leaf": show(&tlog_tiles::record_hash(&entry)),
                    "proof": proof.iter().map(show).collect::<Vec<_>>(),
                    "entry": String::from_utf8_lossy(&entry),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                match &decoded {
                    Some(e) => println!(
                        "Entry {index} of {}: {} in {}",
                        cp.size, e.header.kind, e.header.cache
                    ),
                    None => println!("Entry {index} of {}: not a provenix entry", cp.size),
                }
                println!("Leaf: {}", show(&tlog_tiles::record_hash(&entry)));
                for h in &proof {
                    println!("Proof: {}", show(h));
                }
                println!(
                    "Included in the checkpoint of {} entries, root {}",
                    cp.size,
                    show(&cp.root)
                );
                say_continuity(&log.origin, &continuity);
            }
        }
        LogCommand::Consistency {
            cache,
            old,
            json,
            pins,
        } => {
            let (api, _, cache) = client_for(&cache)?;
            let mut log = pins.reader(api, &cache).await?;
            let (cp, continuity) = log.checkpoint().await?;
            if old == 0 || old > cp.size {
                bail!("OLD must be from 1 to the log's size ({})", cp.size);
            }
            let old_root = log.read(&cp, |r| tlog_tiles::tree_hash(old, r)).await?;
            let proof = log
                .read(&cp, |r| tlog_tiles::prove_tree(cp.size, old, r))
                .await?;
            tlog_tiles::check_tree(&proof, cp.size, cp.root, old, old_root)
                .map_err(|_| anyhow::anyhow!("the consistency proof does not verify"))?;
            if json {
                let out = json!({
                    "origin": cp.origin,
                    "old_size": old,
                    "old_root": show(&old_root),
                    "size": cp.size,
                    "root": show(&cp.root),
                    "proof": proof.iter().map(show).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("The tree of {old} entries had root {}", show(&old_root));
                for h in &proof {
                    println!("Proof: {}", show(h));
                }
                println!(
                    "It is a prefix of the checkpoint of {} entries, root {}",
                    cp.size,
                    show(&cp.root)
                );
                say_continuity(&log.origin, &continuity);
            }
        }
    }
    Ok(())
}
