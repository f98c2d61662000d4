//! `provenix provenance`: every upload record of one store path, and the
//! divergent claims, as `audit` prints them; or the cache-signed in-toto
//! attestation.

use anyhow::Result;
use clap::Args;
use provenix_provenance::audit::Provenance;

use super::audit::{print_closure, print_divergence, print_upload};
use super::client_for;

/// Every upload record of a store path: who pushed it, with what key,
/// certificate and claims; divergent claims too.
#[derive(Args)]
pub struct ProvenanceArgs {
    /// `[SERVER:]CACHE`
    cache: String,
    /// A store path, its base name or its hash.
    path: String,
    #[arg(long)]
    json: bool,
    /// Print an in-toto Statement v1 in a DSSE envelope signed by the cache key.
    #[arg(long)]
    in_toto: bool,
}

pub async fn run(args: ProvenanceArgs) -> Result<()> {
    let ProvenanceArgs {
        cache,
        path,
        json,
        in_toto,
    } = args;
    let (api, _, cache) = client_for(&cache)?;
    if in_toto {
        let env = api.in_toto(&cache, &path).await?;
        println!("{}", serde_json::to_string_pretty(&env)?);
        return Ok(());
    }
    let p: Provenance = api.provenance(&cache, &path).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&p)?);
        return Ok(());
    }
    println!("{}", p.store_path.as_deref().unwrap_or(&path));
    for u in &p.uploads {
        print_upload(u);
    }
    for d in &p.divergences {
        print_divergence(d);
    }
    for s in &p.closures {
        print_closure(s);
    }
    Ok(())
}
