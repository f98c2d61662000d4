//! `provenix whoami`: the identity a server sees for the saved token, or,
//! given a cache, the signing key an exchange gets (as `push` does).

use anyhow::{bail, Result};
use clap::Args;

use super::client_for;
use crate::api::ApiClient;
use crate::config::ClientConfig;
use crate::exchange;
use crate::time::format_time;

/// Show who you are to a server. With a cache: exchange for a signing
/// key (as `push` does) and show its identity and validity.
#[derive(Args)]
pub struct WhoamiArgs {
    /// `[SERVER:]CACHE`, or `SERVER:` alone for the token's identity.
    cache: Option<String>,
    #[arg(long)]
    json: bool,
}

pub async fn run(args: WhoamiArgs) -> Result<()> {
    let WhoamiArgs {
        cache: reference,
        json: as_json,
    } = args;
    let cfg = ClientConfig::load()?;
    let reference = reference.unwrap_or_default();
    if reference.is_empty() || reference.ends_with(':') {
        // The token's own identity, no key involved.
        let name = match reference.strip_suffix(':') {
            Some(n) => n.to_string(),
            None => cfg.default_name()?,
        };
        let server = cfg.server(&name)?;
        if server.token.is_none() {
            bail!("no token for {name:?}: inside CI, name a cache (`provenix whoami CACHE`) to exchange the job's OIDC token");
        }
        let me = ApiClient::new(&server)?.whoami().await?;
        if as_json {
            println!("{}", serde_json::to_string_pretty(&me)?);
        } else {
            println!(
                "Subject: {}",
                me["subject"].as_str().unwrap_or("(anonymous)")
            );
            if let Some(exp) = me["expires_at"].as_i64() {
                println!("Token expires: {}", format_time(exp));
            }
            if let Some(caches) = me["caches"].as_object() {
                for (pattern, perms) in caches {
                    println!("Cache {pattern}: {perms}");
                }
            }
        }
        return Ok(());
    }
    let (api, server, cache) = client_for(&reference)?;
    let credential = exchange::Credential::for_server(&server)?;
    let session = exchange::exchange(&api, &credential, &cache).await?;
    let a = &session.answer;
    if as_json {
        let mut v = serde_json::to_value(a)?;
        // The session token is a credential: never print it.
        v.as_object_mut().map(|o| o.remove("access_token"));
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("Identity: {}", a.identity.subject);
    println!("Issuer: {}", a.identity.issuer);
    for claim in [
        "repository",
        "repository_id",
        "workflow_ref",
        "job_workflow_ref",
        "ref",
        "sha",
        "event_name",
        "environment",
        "run_id",
        "run_attempt",
        "runner_environment",
        "actor",
    ] {
        if let Some(v) = provenix_policy::publisher::claim_text(&a.identity.claims, claim) {
            println!("  {claim}: {v}");
        }
    }
    println!("Cache: {}", a.cache);
    println!("Key: {}", a.key_id);
    println!(
        "Valid: {} to {} ({} seconds)",
        format_time(a.not_before),
        format_time(a.not_after),
        a.not_after - a.not_before
    );
    Ok(())
}
