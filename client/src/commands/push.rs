//! `provenix push`: its flags, and the run that hands them to the push
//! pipeline (`crate::push`) with a credential for the server.

use anyhow::{bail, Context, Result};
use clap::Args;

use super::client_for;
use crate::exchange::Credential;
use crate::nix::LocalStore;
use crate::push::PushOptions;

/// Push store paths and their closures to a cache.
#[derive(Args)]
pub struct PushArgs {
    /// `[SERVER:]CACHE`
    cache: String,
    /// Store paths (with --stdin, read one per line from standard input
    /// as well).
    #[arg(required_unless_present = "stdin")]
    paths: Vec<String>,
    /// Read the paths to push from standard input, one per line (what a
    /// `post-build-hook` or `nix-store -qR` hands over).
    #[arg(long)]
    stdin: bool,
    /// Push paths an upstream cache (`upstream-cache-key-names`) signs too.
    #[arg(long)]
    ignore_upstream_cache_filter: bool,
    /// Uploads in parallel.
    #[arg(short = 'j', long, default_value_t = 5)]
    jobs: usize,
    /// Push only the given paths, not their closures.
    #[arg(long)]
    no_closure: bool,
    /// The local store to read from (default: Nix's, or NIX_REMOTE).
    #[arg(long)]
    store: Option<String>,
    /// Append what was pushed (paths, bytes, dedup, the key's identity) to
    /// FILE as a JSON line.
    #[arg(long, value_name = "FILE")]
    summary: Option<std::path::PathBuf>,
}

pub async fn run(args: PushArgs) -> Result<()> {
    let PushArgs {
        cache,
        mut paths,
        stdin,
        ignore_upstream_cache_filter,
        jobs,
        no_closure,
        store,
        summary,
    } = args;
    if stdin {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let line = line.context("cannot read the paths from standard input")?;
            let line = line.trim();
            if !line.is_empty() {
                paths.push(line.to_string());
            }
        }
        if paths.is_empty() {
            bail!("no paths given on standard input");
        }
    }
    let (api, server, cache) = client_for(&cache)?;
    let credential = Credential::for_server(&server)?;
    let store = LocalStore { store };
    crate::push::push(
        &api,
        credential,
        &store,
        &cache,
        &paths,
        PushOptions {
            jobs,
            closure: !no_closure,
            ignore_upstream: ignore_upstream_cache_filter,
            summary,
        },
    )
    .await?;
    Ok(())
}
