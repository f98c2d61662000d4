//! `provenix log monitor CACHE`: follows a cache's transparency log from
//! where the last run stopped, each checkpoint checked consistent with the
//! one before and each entry with the tree, and reports the entries of the
//! watched identities (or, with `--unexpected`, of everyone else). What an
//! entry comes to is decided in policy/src/log_monitor.rs.
//!
//! Exit codes, for cron: 0 nothing alarming; 2 `--unexpected` found
//! entries; 3 the log failed a check (rewritten, tampered, or an anomalous
//! entry); 1 anything else (the server unreachable, bad arguments).

use anyhow::{bail, Context, Result};
use clap::Args;
use provenix_policy::log_monitor::{
    judge, Anomaly, Judgement, MonitorState, Report, Reporting, Watch,
};
use provenix_provenance::tlog::tiles;
use serde_json::json;
use std::path::PathBuf;

use super::client_for;
use crate::time::format_time;
use crate::tlog::{show, Tampered};

/// Follow a cache's transparency log and report entries by identity.
#[derive(Args)]
pub struct MonitorArgs {
    /// `[SERVER:]CACHE`
    cache: String,
    /// Watch a repository: `OWNER/REPO`, or its numeric id. Repeatable.
    #[arg(long = "repository", value_name = "R")]
    repositories: Vec<String>,
    /// Watch identities whose subject matches GLOB (`*` matches anything),
    /// e.g. `repo:acme/*:ref:refs/heads/main`. Repeatable.
    #[arg(long = "identity", value_name = "GLOB")]
    identities: Vec<String>,
    /// Report the entries of identities NOT watched: keys issued to,
    /// uploads by and revocations of anyone else. Exits 2 if any.
    #[arg(long)]
    unexpected: bool,
    /// JSON lines on standard output, one object per entry reported.
    #[arg(long)]
    json: bool,
    /// Where the monitor keeps its place (default: beside the remembered
    /// checkpoint, one per log). Give each differently-watching monitor
    /// its own.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    #[command(flatten)]
    pins: super::log::WitnessPins,
}

/// `--unexpected` found entries.
#[derive(Debug)]
pub struct UnexpectedEntries(pub usize);

impl std::fmt::Display for UnexpectedEntries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entr{} of identities not watched",
            self.0,
            if self.0 == 1 { "y" } else { "ies" }
        )
    }
}

impl std::error::Error for UnexpectedEntries {}

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedState {
    origin: String,
    /// Whether this monitor read the log from entry 0.
    from_start: bool,
    /// The root of the tree of the `next` entries read (base64), so that
    /// a rewritten history is caught even without the remembered
    /// checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root: Option<String>,
    #[serde(flatten)]
    state: MonitorState,
}

pub async fn run(args: MonitorArgs) -> Result<()> {
    let watch = Watch {
        repositories: args.repositories,
        identities: args.identities,
    };
    if args.unexpected && watch.is_empty() {
        bail!("--unexpected needs the identities that are expected: --repository or --identity");
    }
    let reporting = if args.unexpected {
        Reporting::Unexpected
    } else {
        Reporting::Expected
    };
    let (api, _, cache) = client_for(&args.cache)?;
    let mut log = args.pins.reader(api, &cache).await?;
    let state_file = match args.state {
        Some(p) => p,
        None => log.memory_file("monitor")?,
    };
    let mut saved = load(&state_file, &log.origin)?;
    // Checked against the checkpoint this client remembered (and then
    // remembered in its place): a rewritten or forked log stops here.
    let (cp, _) = log.checkpoint().await?;
    if saved.state.next > cp.size {
        return Err(Tampered(format!(
            "the log {} has {} entries, fewer than the {} this monitor already read",
            log.origin, cp.size, saved.state.next
        ))
        .into());
    }
    let start = saved.state.next;
    if let Some(root) = &saved.root {
        let then = log.read(&cp, |r| tlog_tiles::tree_hash(start, r)).await?;
        if show(&then) != *root {
            return Err(Tampered(format!(
                "the log {} is not consistent with the tree of {start} entries this monitor read: its history was rewritten",
                log.origin
            ))
            .into());
        }
    }
    let (mut reported, mut anomalies) = (0usize, 0usize);
    while saved.state.next < cp.size {
        let n = saved.state.next / tiles::WIDTH;
        let skip = (saved.state.next % tiles::WIDTH) as usize;
        let entries = log.bundle(&cp, n).await?;
        for bytes in &entries[skip..] {
            match judge(
                &mut saved.state,
                &cache,
                bytes,
                &watch,
                reporting,
                saved.from_start,
            ) {
                Judgement::Report(r) => {
                    reported += 1;
                    print_report(&r, args.json)?;
                }
                Judgement::Anomaly(a) => {
                    anomalies += 1;
                    print_anomaly(&a, args.json)?;
                }
                Judgement::Quiet => {}
            }
        }
        // Now and then, so an interrupted run resumes near where it
        // stopped (memory stays one bundle either way).
        if n % 64 == 63 && saved.state.next < cp.size {
            let next = saved.state.next;
            let root = log.read(&cp, |r| tlog_tiles::tree_hash(next, r)).await?;
            saved.root = Some(show(&root));
            save(&state_file, &saved)?;
        }
    }
    saved.root = (cp.size > 0).then(|| show(&cp.root));
    save(&state_file, &saved)?;
    eprintln!(
        "Read entries {start} to {} of {}: {reported} reported, {anomalies} anomal{}; the log is consistent with what this client saw before.",
        cp.size,
        log.origin,
        if anomalies == 1 { "y" } else { "ies" }
    );
    if anomalies > 0 {
        return Err(Tampered(format!(
            "{anomalies} anomalous entr{} in the log",
            if anomalies == 1 { "y" } else { "ies" }
        ))
        .into());
    }
    if args.unexpected && reported > 0 {
        return Err(UnexpectedEntries(reported).into());
    }
    Ok(())
}

fn load(path: &std::path::Path, origin: &str) -> Result<SavedState> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let saved: SavedState = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a monitor's state", path.display()))?;
            if saved.origin != origin {
                bail!(
                    "{} is the state of a monitor of {}, not of {origin}",
                    path.display(),
                    saved.origin
                );
            }
            Ok(saved)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SavedState {
            origin: origin.to_string(),
            from_start: true,
            root: None,
            state: MonitorState::default(),
        }),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn save(path: &std::path::Path, saved: &SavedState) -> Result<()> {
    crate::tlog::write_atomically(path, &serde_json::to_vec(saved)?)
        .with_context(|| format!("cannot save the monitor's state in {}", path.display()))
}

fn print_report(r: &Report, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let who = match &r.identity {
        Some(id) => id.subject.clone(),
        None if r.kind == "revocation" => String::new(),
        None => "(a key logged before this monitor started)".into(),
    };
    let what = match (&r.kind[..], &r.store_path, &r.revocation) {
        ("upload-key", _, _) => format!("key {} issued", r.key_id.as_deref().unwrap_or("")),
        (_, Some(path), _) => format!("{path} by key {}", r.key_id.as_deref().unwrap_or("")),
        ("revocation", _, Some(rev)) => format!(
            "selector {} by {}: {} (removed {} paths)",
            rev["selector"],
            rev["actor"].as_str().unwrap_or(""),
            rev["reason"].as_str().unwrap_or(""),
            rev["removed_paths"]
        ),
        _ => format!("by key {}", r.key_id.as_deref().unwrap_or("")),
    };
    let (who, what) = (crate::tlog::plain(&who), crate::tlog::plain(&what));
    let mark = if r.expected { "" } else { "UNEXPECTED " };
    println!(
        "{mark}{} {} {} {what}{}",
        r.index,
        format_time(r.time),
        r.kind,
        if who.is_empty() {
            String::new()
        } else {
            format!(" [{who}]")
        }
    );
    Ok(())
}

fn print_anomaly(a: &Anomaly, json: bool) -> Result<()> {
    if json {
        println!("{}", json!({"index": a.index, "anomaly": a.problem}));
    } else {
        println!("ANOMALY {} {}", a.index, crate::tlog::plain(&a.problem));
    }
    Ok(())
}
