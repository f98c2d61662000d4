//! `provenix push`: its flags, and the run that hands them to the push
//! pipeline (`crate::push`) with a credential for the server.

use anyhow::Result;
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
    #[arg(required = true)]
    paths: Vec<String>,
    /// Uploads in parallel.
    #[arg(short = 'j', long, default_value_t = 5)]
    jobs: usize,
    /// Push only the given paths, not their closures.
    #[arg(long)]
    no_closure: bool,
    /// The local store to read from (default: Nix's, or NIX_REMOTE).
    #[arg(long)]
    store: Option<String>,
}

pub async fn run(args: PushArgs) -> Result<()> {
    let PushArgs {
        cache,
        paths,
        jobs,
        no_closure,
        store,
    } = args;
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
        },
    )
    .await?;
    Ok(())
}
