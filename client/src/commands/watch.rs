//! `provenix watch-store` (Attic's verb) and `provenix watch-exec`
//! (Cachix's): push what becomes valid in the local store without listing
//! it, with the same signing, upstream filter and progress as `push`.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use super::{client_for, stop_signal};
use crate::exchange::{Credential, Signer};
use crate::nix::LocalStore;
use crate::push::PushOptions;

/// Watch the local store and push every new valid path, with its closure.
#[derive(Args)]
pub struct WatchStoreArgs {
    /// `[SERVER:]CACHE`
    cache: String,
    /// The local store to watch (default: Nix's, or NIX_REMOTE).
    #[arg(long)]
    store: Option<String>,
    /// How often to look for new paths.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Uploads in parallel.
    #[arg(short = 'j', long, default_value_t = 5)]
    jobs: usize,
    /// Append each push's summary to FILE as a JSON line.
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
}

/// Run COMMAND, then push every path that became valid while it ran (also
/// when it fails); exits with COMMAND's status.
#[derive(Args)]
pub struct WatchExecArgs {
    /// `[SERVER:]CACHE`
    cache: String,
    /// The local store (default: Nix's, or NIX_REMOTE).
    #[arg(long)]
    store: Option<String>,
    /// Uploads in parallel.
    #[arg(short = 'j', long, default_value_t = 5)]
    jobs: usize,
    /// Append the push's summary to FILE as a JSON line.
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn options(jobs: usize, summary: &Option<PathBuf>) -> PushOptions {
    PushOptions {
        jobs,
        closure: true,
        ignore_upstream: false,
        summary: summary.clone(),
    }
}

/// Whether a store directory entry names a path worth pushing: a store
/// path's name, not a derivation or Nix's own lock and temporary files.
fn pushable_name(name: &str) -> bool {
    let Some((hash, rest)) = name.split_once('-') else {
        return false;
    };
    hash.len() == 32
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        && !rest.is_empty()
        && ![".drv", ".lock", ".check", ".chroot"]
            .iter()
            .any(|s| rest.ends_with(s))
}

fn store_dir_entries(dir: &std::path::Path) -> Result<HashSet<String>> {
    let entries = match std::fs::read_dir(dir) {
        // A store no path was added to yet has no directory: nothing in it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        r => r,
    };
    Ok(entries
        .with_context(|| format!("cannot read the store directory {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| pushable_name(n))
        .collect())
}

pub async fn watch_store(args: WatchStoreArgs) -> Result<()> {
    let store = LocalStore {
        store: args.store.clone(),
    };
    let Some(real_dir) = crate::nar_dump::real_store_dir(args.store.as_deref()) else {
        bail!(
            "watch-store needs a store whose files are on this machine (a local store or daemon)"
        );
    };
    let logical = std::env::var("NIX_STORE_DIR").unwrap_or_else(|_| "/nix/store".into());
    let logical = PathBuf::from(logical);
    // What is there now was there before the watch: not pushed.
    let mut seen = store_dir_entries(&real_dir)?;
    // Entries that appeared but are not valid yet (a build in progress).
    let mut waiting: BTreeSet<String> = BTreeSet::new();
    let mut signer: Option<Signer> = None;
    let mut backoff = Duration::from_secs(1);
    eprintln!("Watching {} for new paths...", real_dir.display());
    let stop = stop_signal();
    tokio::pin!(stop);
    let _ = futures::FutureExt::now_or_never(&mut stop);
    // Asked to stop: one last look at the store, so what a job built just
    // before (a CI job's last step) is pushed too, then out.
    let mut stopping = false;
    loop {
        if !stopping {
            tokio::select! {
                _ = &mut stop => stopping = true,
                _ = tokio::time::sleep(args.interval) => {}
            }
        }
        let now = store_dir_entries(&real_dir)?;
        waiting.extend(now.difference(&seen).cloned());
        // Gone before it became valid: a failed build's output.
        waiting.retain(|n| now.contains(n));
        seen = now;
        if waiting.is_empty() {
            if stopping {
                return Ok(());
            }
            continue;
        }
        let names: Vec<String> = waiting.iter().cloned().collect();
        let paths: Vec<String> = names
            .iter()
            .map(|n| logical.join(n).to_string_lossy().into_owned())
            .collect();
        let valid = store.valid(&paths).await?;
        if valid.is_empty() {
            if stopping {
                return Ok(());
            }
            continue;
        }
        let result = async {
            if signer.is_none() {
                let (api, server, cache) = client_for(&args.cache)?;
                let credential = Credential::for_server(&server)?;
                signer = Some(Signer::start(&api, credential, &cache).await?);
            }
            let (_, _, cache) = client_for(&args.cache)?;
            let signer = signer.as_ref().expect("started above");
            crate::push::push_with(
                signer,
                &store,
                &cache,
                &valid,
                options(args.jobs, &args.summary),
            )
            .await
        }
        .await;
        match result {
            Ok(_) => {
                for p in &valid {
                    if let Some(n) = p.rsplit('/').next() {
                        waiting.remove(n);
                    }
                }
                backoff = Duration::from_secs(1);
            }
            Err(e) if stopping => return Err(e),
            Err(e) => {
                // The server restarting, a network blip: the paths stay
                // waiting and the key is exchanged afresh.
                eprintln!("provenix: push failed, retrying in {backoff:?}: {e:#}");
                signer = None;
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
        if stopping {
            return Ok(());
        }
    }
}

/// COMMAND's exit status as a process exit code (128 + the signal that
/// ended it, as shells report).
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Runs the command and pushes what it added; returns the exit code.
pub async fn watch_exec(args: WatchExecArgs) -> Result<i32> {
    let store = LocalStore {
        store: args.store.clone(),
    };
    // Fail on a bad cache or server before the command runs.
    let (api, server, cache) = client_for(&args.cache)?;
    let before = store.all_paths().await?;
    let (program, rest) = args.command.split_first().expect("clap requires it");
    let mut child = tokio::process::Command::new(program)
        .args(rest)
        .spawn()
        .with_context(|| format!("cannot run {program:?}"))?;
    // Ctrl-C reaches the command (the terminal's whole process group);
    // this process waits for it and still pushes what it built.
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let code = exit_code(status);
    let after = store.all_paths().await?;
    let mut added: Vec<String> = after
        .difference(&before)
        .filter(|p| p.rsplit('/').next().is_some_and(pushable_name))
        .cloned()
        .collect();
    added.sort();
    if added.is_empty() {
        eprintln!("{program} added no paths to the store.");
        return Ok(code);
    }
    let credential = Credential::for_server(&server)?;
    let pushed = crate::push::push(
        &api,
        credential,
        &store,
        &cache,
        &added,
        options(args.jobs, &args.summary),
    )
    .await;
    match pushed {
        Ok(_) => Ok(code),
        // The command's own failure is what the caller needs to see first.
        Err(e) if code != 0 => {
            eprintln!("provenix: error: {e:#}");
            Ok(code)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_store_path_names_are_pushed() {
        assert!(pushable_name("0123456789abcdfghijklmnpqrsvwxyz-hello-2.12"));
        for name in [
            "0123456789abcdfghijklmnpqrsvwxyz-hello.drv",
            "0123456789abcdfghijklmnpqrsvwxyz-hello.lock",
            "0123456789abcdfghijklmnpqrsvwxyz-hello.chroot",
            "0123456789abcdfghijklmnpqrsvwxyz-",
            ".links",
            "tmp-123-0",
            "0123456789ABCDFGHIJKLMNPQRSVWXYZ-x",
        ] {
            assert!(!pushable_name(name), "{name}");
        }
    }
}
