//! `provenix log checkpoint|proof|consistency`: a cache's transparency log
//! read and checked as any tlog-tiles client would (client/src/tlog.rs).

use anyhow::{bail, Result};
use clap::Subcommand;
use provenix_provenance::tlog::entry::Entry;
use serde_json::json;

use super::client_for;
use crate::tlog::{show, Continuity, LogReader};

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
        #[arg(long)]
        json: bool,
    },
    /// Entry INDEX and its inclusion proof in the current checkpoint.
    Proof {
        cache: String,
        index: u64,
        #[arg(long)]
        json: bool,
    },
    /// The consistency proof from the tree of OLD entries to the current
    /// one, and the root the tree had at OLD.
    Consistency {
        cache: String,
        old: u64,
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
        LogCommand::Checkpoint { cache, json } => {
            let (api, _, cache) = client_for(&cache)?;
            let mut log = LogReader::new(api, &cache).await?;
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
        LogCommand::Proof { cache, index, json } => {
            let (api, _, cache) = client_for(&cache)?;
            let mut log = LogReader::new(api, &cache).await?;
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
        LogCommand::Consistency { cache, old, json } => {
            let (api, _, cache) = client_for(&cache)?;
            let mut log = LogReader::new(api, &cache).await?;
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
