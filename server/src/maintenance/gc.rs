//! Garbage collection: paths past their cache's retention, then NARs no cache
//! holds, then chunks no NAR uses, then stored objects no row names (left by
//! failed or interrupted uploads).

use anyhow::Result;
use futures::TryStreamExt;
use serde::Serialize;

use crate::state::AppState;

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub expired_paths: u64,
    pub deleted_nars: u64,
    pub deleted_chunks: u64,
    pub swept_objects: u64,
    pub forgotten_token_ids: u64,
    pub forgotten_statement_nonces: u64,
    /// Stored bytes of the chunks deleted.
    pub reclaimed_bytes: u64,
    /// Closure statements' index rows of paths no longer stored.
    pub stale_vouches: u64,
}

pub async fn run_once(state: &AppState) -> Result<GcReport> {
    let started = std::time::Instant::now();
    let report = collect(state).await?;
    let m = &state.metrics;
    m.gc_runs.inc();
    m.gc_duration.observe(started.elapsed().as_secs_f64());
    m.gc_expired_paths.inc_by(report.expired_paths);
    m.gc_reclaimed_bytes.inc_by(report.reclaimed_bytes);
    let (nar, stored) = state.db.storage_totals().await?;
    use crate::operate::metrics::Kind;
    m.storage_bytes
        .get_or_create(&Kind { kind: "nar" })
        .set(nar);
    m.storage_bytes
        .get_or_create(&Kind { kind: "stored" })
        .set(stored);
    Ok(report)
}

async fn collect(state: &AppState) -> Result<GcReport> {
    let now = crate::clock::now();
    let mut report = GcReport::default();
    let retention = state
        .config
        .garbage_collection
        .default_retention_period
        .as_secs() as i64;
    report.expired_paths = state.db.expire_paths(retention, now).await?;
    report.deleted_nars = state.db.delete_orphan_nars().await?;
    report.stale_vouches = state.db.purge_stale_vouches().await?;

    let grace = state.config.garbage_collection.chunk_grace_period.as_secs() as i64;
    let claimed = state.db.claim_orphan_chunks(now - grace).await?;
    // A pack is deleted with its last valid chunk; the space of dead chunks
    // in a pack still in use is reclaimed when the rest go
    // (docs/architecture.md).
    let mut keys: Vec<String> = claimed.iter().map(|(_, k, _)| k.clone()).collect();
    keys.sort_unstable();
    keys.dedup();
    let in_use = state.db.pack_keys_in_use(&keys).await?;
    let mut gone = std::collections::HashSet::new();
    for key in keys.iter().filter(|k| !in_use.contains(*k)) {
        match state.storage.delete(key).await {
            Ok(()) => {
                gone.insert(key.as_str());
            }
            Err(e) => tracing::warn!("gc: cannot delete {key}: {e:#}"),
        }
    }
    let deleted: Vec<(i64, i64)> = claimed
        .iter()
        .filter(|(_, k, _)| in_use.contains(k) || gone.contains(k.as_str()))
        .map(|(id, _, size)| (*id, *size))
        .collect();
    report.reclaimed_bytes = deleted.iter().map(|(_, size)| (*size).max(0) as u64).sum();
    let deleted: Vec<i64> = deleted.into_iter().map(|(id, _)| id).collect();
    state.db.delete_chunk_rows(&deleted).await?;
    report.deleted_chunks = deleted.len() as u64;

    // Objects older than twice the longest upload that no row names can
    // belong to no upload in progress.
    let sweep_cutoff = now - 2 * state.config.max_upload_duration.as_secs() as i64;
    report.swept_objects = sweep(state, sweep_cutoff).await?;
    // A token past exp (and the leeway, added when it was spent) is refused
    // by its exp check, so its jti no longer needs remembering.
    report.forgotten_token_ids = state.db.purge_used_tokens(now).await?;
    report.forgotten_statement_nonces = state.db.purge_spent_statements(now).await?;
    tracing::info!(?report, "garbage collection done");
    Ok(report)
}

/// Deletes stored objects older than `cutoff` that no chunk row names.
pub async fn sweep(state: &AppState, cutoff: i64) -> Result<u64> {
    let mut swept = 0;
    let mut listing = state.storage.list(crate::push::pipeline::PACK_PREFIX);
    let mut batch = Vec::new();
    loop {
        let next = listing.try_next().await?;
        if let Some((key, modified)) = &next {
            if *modified < cutoff {
                batch.push(key.clone());
            }
        }
        if batch.len() >= crate::db::BATCH || (next.is_none() && !batch.is_empty()) {
            let known = state.db.known_pack_keys(&batch).await?;
            for key in batch.drain(..).filter(|k| !known.contains(k)) {
                state.storage.delete(&key).await?;
                swept += 1;
            }
        }
        if next.is_none() {
            return Ok(swept);
        }
    }
}

pub async fn run_forever(state: &AppState) {
    let interval = state
        .config
        .garbage_collection
        .interval
        .max(std::time::Duration::from_secs(1));
    loop {
        tokio::time::sleep(interval).await;
        if let Err(e) = run_once(state).await {
            tracing::error!("garbage collection failed: {e:#}");
        }
    }
}
