//! `provenix check-store`: the paths of a local store that a cache has
//! revoked, so a fleet finds what it already substituted.

use anyhow::{bail, Result};
use clap::Args;
use provenix_provenance::NarHash;
use std::collections::HashSet;

use super::client_for;
use crate::nix::LocalStore;

/// List the paths of a local Nix store that a cache has revoked.
#[derive(Args)]
pub struct CheckStoreArgs {
    cache: String,
    /// The local store to check (default: Nix's, or NIX_REMOTE).
    #[arg(long)]
    store: Option<String>,
}

/// Prints each local path the cache has revoked (same store path and NAR
/// hash) and fails if there is any.
pub async fn run(args: CheckStoreArgs) -> Result<()> {
    let (api, _, cache) = client_for(&args.cache)?;
    let store = LocalStore { store: args.store };
    let mut revoked: HashSet<(String, String)> = HashSet::new();
    let mut cursor = 0;
    loop {
        let page = api.revoked_paths(&cache, cursor).await?;
        for p in &page.items {
            if let Ok(h) = NarHash::parse(&p.nar_hash) {
                revoked.insert((p.store_path.clone(), h.to_nix_string()));
            }
        }
        match page.next_cursor {
            Some(c) => cursor = c,
            None => break,
        }
    }
    let mut found = Vec::new();
    if !revoked.is_empty() {
        for info in store.all_path_infos().await? {
            if revoked.contains(&(info.path.clone(), info.nar_hash.to_nix_string())) {
                found.push(info.path);
            }
        }
    }
    found.sort();
    for p in &found {
        println!("{p}");
    }
    if !found.is_empty() {
        bail!(
            "{} path(s) in the local store were revoked from \"{cache}\"",
            found.len()
        );
    }
    eprintln!(
        "No path of the local store is revoked from \"{cache}\" ({} revoked in all).",
        revoked.len()
    );
    Ok(())
}
