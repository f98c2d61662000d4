//! `provenix revoke` and `provenix check-store`.

use anyhow::{bail, Result};
use provenix_provenance::revocation::{RevokeRequest, RevokeResponse};
use provenix_provenance::NarHash;
use std::collections::HashSet;

use crate::api::ApiClient;
use crate::nix::LocalStore;

pub async fn revoke(api: &ApiClient, req: &RevokeRequest, json: bool) -> Result<()> {
    if let Some(problem) = req.problem() {
        bail!("{problem}");
    }
    let r: RevokeResponse = api.revoke(req).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    if r.keys.is_empty() && r.uploads.is_empty() {
        println!("No unrevoked key or upload record matches; nothing was revoked.");
        return Ok(());
    }
    let verb = if r.dry_run { "Would revoke" } else { "Revoked" };
    println!(
        "{verb} {} keys and {} upload records{}.",
        r.keys.len(),
        r.uploads.len(),
        r.revocation_id
            .map(|id| format!(" (revocation {id})"))
            .unwrap_or_default()
    );
    for k in &r.keys {
        println!("  key {k}");
    }
    for u in &r.uploads {
        println!("  upload {u}");
    }
    let now = if r.dry_run {
        "would answer"
    } else {
        "now answer"
    };
    println!("{} paths {now} 404:", r.paths.len());
    for p in &r.paths {
        println!("  {} {}", p.cache, p.store_path);
    }
    if r.dry_run {
        println!("Dry run: nothing was changed.");
    }
    Ok(())
}

/// Lists the paths of the local store that the cache has revoked (same
/// store path and NAR hash), so a fleet finds what it already substituted.
pub async fn check_store(api: &ApiClient, cache: &str, store: &LocalStore) -> Result<()> {
    let mut revoked: HashSet<(String, String)> = HashSet::new();
    let mut cursor = 0;
    loop {
        let page = api.revoked_paths(cache, cursor).await?;
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
