//! `provenix revoke`: revoking keys (by id, identity, issue time or cache)
//! or one upload record, and what that takes out of the caches.

use anyhow::{bail, Context, Result};
use clap::Args;
use provenix_provenance::revocation::{RevokeRequest, RevokeResponse};

use super::client_for;
use super::identity_flags::IdentityFlags;
use crate::api::ApiClient;
use crate::config::ClientConfig;
use crate::time::parse_time;

/// Revoke keys (by id, repository, workflow, run, subject, issue time,
/// cache) or one upload record: every path left with no unrevoked upload
/// answers 404 at once.
#[derive(Args)]
pub struct RevokeArgs {
    /// Only this cache (`[SERVER:]CACHE`); default: every cache you may revoke in.
    #[arg(long)]
    cache: Option<String>,
    /// The server (a `login` name) when --cache is not given.
    #[arg(long)]
    server: Option<String>,
    #[command(flatten)]
    identity: IdentityFlags,
    /// Keys issued at or after (RFC 3339 or Unix seconds).
    #[arg(long)]
    issued_after: Option<String>,
    #[arg(long)]
    issued_before: Option<String>,
    /// One upload record, by the id `provenix provenance` shows.
    #[arg(long)]
    upload: Option<i64>,
    #[arg(long)]
    reason: String,
    /// List what would be revoked and which paths would answer 404; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

pub async fn run(args: RevokeArgs) -> Result<()> {
    let RevokeArgs {
        cache,
        server,
        identity,
        issued_after,
        issued_before,
        upload,
        reason,
        dry_run,
        json,
    } = args;
    let (api, cache) = match &cache {
        Some(c) => {
            let (api, _, cache) = client_for(c)?;
            (api, Some(cache))
        }
        None => {
            let cfg = ClientConfig::load()?;
            let name = server
                .or(cfg.default_server.clone())
                .context("no server: run `provenix login NAME URL TOKEN` or pass --server")?;
            (ApiClient::new(&cfg.server(&name)?)?, None)
        }
    };
    let req = RevokeRequest {
        cache,
        identity: identity.selector(),
        issued_after: issued_after.as_deref().map(parse_time).transpose()?,
        issued_before: issued_before.as_deref().map(parse_time).transpose()?,
        upload,
        reason,
        dry_run,
        ..RevokeRequest::default()
    };
    revoke(&api, &req, json).await
}

/// Sends the request (unless it names nothing) and prints what was, or
/// with --dry-run would be, revoked.
async fn revoke(api: &ApiClient, req: &RevokeRequest, json: bool) -> Result<()> {
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
