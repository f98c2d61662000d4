//! One module per `provenix` command, each owning its clap type and its
//! `run`; and `client_for`, which most of them start with.

pub mod audit;
pub mod cache;
pub mod check_store;
pub mod identity_flags;
pub mod keys;
pub mod log;
pub mod log_monitor;
pub mod login;
pub mod pin;
pub mod provenance;
pub mod publisher;
pub mod push;
pub mod queue;
pub mod revoke;
pub mod use_cache;
pub mod verify;
pub mod verify_attestation;
pub mod watch;
pub mod whoami;

use anyhow::Result;

use crate::api::ApiClient;
use crate::config::{ClientConfig, ServerConfig};

/// The client, server and cache name a `[SERVER:]CACHE` argument names.
pub fn client_for(reference: &str) -> Result<(ApiClient, ServerConfig, String)> {
    let cfg = ClientConfig::load()?;
    let (_, server, cache) = cfg.resolve(reference)?;
    // Fail on a typo before a network round trip.
    provenix_policy::validate_cache_name(&cache)?;
    Ok((ApiClient::new(&server)?, server, cache))
}

/// Resolves on SIGINT or SIGTERM: what the long-running commands
/// (`queue run`, `watch-store`) stop on, after the push in flight.
pub async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
