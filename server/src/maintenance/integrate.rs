//! Integration: every cache's newly numbered ledger entries go into its
//! transparency log, and a new checkpoint is signed, within
//! `[log] integrate-interval` of their commit. Every serving replica runs
//! it; the log's head row makes them take turns (db/log.rs), so whichever
//! gets there first integrates and the others find nothing to do. A crash
//! between a commit and its integration loses nothing: the ledger holds
//! the entry, and the next pass, on any replica, integrates it.

use anyhow::Result;
use provenix_provenance::tlog::checkpoint::origin;

use crate::db::log::INTEGRATE_BATCH;
use crate::state::AppState;

/// Integrates every log that is behind its ledger; returns the entries
/// integrated. A log that fails (damage, a lost connection) does not stop
/// the others; the first failure is returned after all were tried.
pub async fn integrate_all(state: &AppState) -> Result<u64> {
    let mut integrated = 0;
    let mut failure = None;
    let publish = state.config.log.quorum() == 0;
    for (cache_id, name) in state.db.logs_behind().await? {
        let origin = origin(&state.api_endpoint, &name);
        loop {
            let done = match state.db.integrate_log(cache_id, &origin, publish).await {
                Ok(done) => done,
                Err(e) => {
                    failure.get_or_insert(anyhow::anyhow!("cache {name}'s log: {e}"));
                    break;
                }
            };
            let n = (done.to - done.from) as u64;
            integrated += n;
            state.metrics.log_integrated_entries.inc_by(n);
            if n < INTEGRATE_BATCH as u64 {
                break;
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(integrated),
    }
}

pub async fn run_forever(state: &AppState) {
    let interval = state.config.log.integrate_interval;
    loop {
        match integrate_all(state).await {
            Ok(_) => {}
            Err(e) => {
                state.metrics.log_integration_failures.inc();
                tracing::warn!("log integration: {e:#}");
            }
        }
        tokio::time::sleep(interval).await;
    }
}
