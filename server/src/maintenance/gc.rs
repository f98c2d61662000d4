//! Garbage collection: paths past their cache's retention, then the least
//! recently used paths of a cache (or the server) over its maximum stored
//! size, then NARs no cache holds, then chunks no NAR uses, then stored
//! objects no row names (left by failed or interrupted uploads). No path a
//! pin holds (the pinned path and its closure in the cache) is expired or
//! evicted.

use anyhow::Result;
use futures::TryStreamExt;
use provenix_policy::retention::{choose_evictions, EvictionCandidate};
use provenix_provenance::store_path::StorePath;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

use crate::state::AppState;

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub expired_paths: u64,
    pub deleted_nars: u64,
    pub deleted_chunks: u64,
    pub swept_objects: u64,
    /// Upload sessions (uploads in parts) that can no longer complete,
    /// removed with their parts.
    pub reclaimed_upload_sessions: u64,
    /// NAR files `nix copy --to` PUT that no narinfo followed within an
    /// hour (and stray objects under nix-copy/).
    pub reclaimed_staged_nars: u64,
    pub forgotten_token_ids: u64,
    pub forgotten_statement_nonces: u64,
    /// Stored bytes of the chunks deleted.
    pub reclaimed_bytes: u64,
    /// Closure statements' index rows of paths no longer stored.
    pub stale_vouches: u64,
    /// Paths pins held this run (retention or size would have been free to
    /// take them).
    pub pinned_paths: u64,
    /// Paths removed to bring a cache or the server under its size limit.
    pub evicted_paths: u64,
    /// One entry per limit that was exceeded.
    pub evictions: Vec<Eviction>,
}

/// What GC did about one size limit that was exceeded.
#[derive(Debug, Default, Serialize)]
pub struct Eviction {
    /// The cache whose limit it was; None for the server's.
    pub cache: Option<String>,
    pub limit: i64,
    pub size_before: i64,
    /// Compressed NAR bytes the evicted paths took up (by the limit's measure).
    pub evicted_bytes: i64,
    pub evicted_paths: u64,
    /// The first evicted paths, least recently used first (up to
    /// `REPORTED_PATHS`; every one is in the log).
    pub paths: Vec<String>,
    /// Bytes still over the limit because pins hold them.
    pub still_over: i64,
}

/// How many evicted paths a report names per limit.
const REPORTED_PATHS: usize = 100;
/// Paths read per page of the least-recently-used walk.
const LRU_PAGE: i64 = 1000;

pub async fn run_once(state: &AppState) -> Result<GcReport> {
    let started = std::time::Instant::now();
    let report = collect(state).await?;
    let m = &state.metrics;
    m.gc_runs.inc();
    m.gc_duration.observe(started.elapsed().as_secs_f64());
    m.gc_expired_paths.inc_by(report.expired_paths);
    m.gc_evicted_paths.inc_by(report.evicted_paths);
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
    let mut pinned = Pinned::read(state).await?;
    report.expired_paths = expire(state, retention, now, &mut pinned).await?;
    enforce_size_limits(state, &mut pinned, &mut report).await?;
    report.pinned_paths = pinned.paths.len() as u64;
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
    report.reclaimed_upload_sessions =
        crate::push::parts::reclaim(state, now, sweep_cutoff).await?;
    report.reclaimed_staged_nars = crate::push::nix_copy::reclaim(state, now).await?;
    // A token past exp (and the leeway, added when it was spent) is refused
    // by its exp check, so its jti no longer needs remembering.
    report.forgotten_token_ids = state.db.purge_used_tokens(now).await?;
    report.forgotten_statement_nonces = state.db.purge_spent_statements(now).await?;
    tracing::info!(?report, "garbage collection done");
    Ok(report)
}

/// The paths pins hold, read again before each deletion when a pin was
/// added since (a pin made while GC runs holds from then on, found by the
/// attack review); a pinned path itself is also spared by the deletion's
/// own statement.
struct Pinned {
    paths: HashSet<i64>,
    version: i64,
}

impl Pinned {
    async fn read(state: &AppState) -> Result<Pinned> {
        let version = state.db.pins_version().await?;
        Ok(Pinned {
            paths: pinned_paths(state).await?,
            version,
        })
    }

    async fn refresh(&mut self, state: &AppState) -> Result<()> {
        if state.db.pins_version().await? != self.version {
            *self = Pinned::read(state).await?;
        }
        Ok(())
    }

    fn holds(&self, id: &i64) -> bool {
        self.paths.contains(id)
    }
}

/// Deletes the paths past their retention no pin holds, a page at a time.
async fn expire(state: &AppState, retention: i64, now: i64, pinned: &mut Pinned) -> Result<u64> {
    let mut after = 0;
    let mut expired = 0;
    loop {
        let ids = state
            .db
            .expired_paths(retention, now, after, crate::db::BATCH as i64)
            .await?;
        let Some(last) = ids.last() else {
            return Ok(expired);
        };
        after = *last;
        pinned.refresh(state).await?;
        let doomed: Vec<i64> = ids.into_iter().filter(|id| !pinned.holds(id)).collect();
        expired += state.db.delete_unpinned_paths(&doomed, "expired").await?;
    }
}

/// Every path a pin holds: each pinned path and, through references, its
/// closure as far as the cache holds it.
async fn pinned_paths(state: &AppState) -> Result<HashSet<i64>> {
    let mut roots: HashMap<i64, Vec<String>> = HashMap::new();
    for (cache_id, hash) in state.db.pinned_roots().await? {
        roots.entry(cache_id).or_default().push(hash);
    }
    let mut pinned = HashSet::new();
    for (cache_id, mut frontier) in roots {
        let mut seen: HashSet<String> = frontier.iter().cloned().collect();
        while !frontier.is_empty() {
            let found = state.db.path_references(cache_id, &frontier).await?;
            frontier.clear();
            for (id, refs_json) in found {
                pinned.insert(id);
                let refs: Vec<String> = serde_json::from_str(&refs_json).unwrap_or_default();
                for r in refs {
                    if let Ok(p) = StorePath::from_base_name(&r) {
                        if seen.insert(p.hash_part().to_string()) {
                            frontier.push(p.hash_part().to_string());
                        }
                    }
                }
            }
        }
    }
    Ok(pinned)
}

/// Brings every cache with a limit of its own, then the server, under its
/// maximum stored size.
async fn enforce_size_limits(
    state: &AppState,
    pinned: &mut Pinned,
    report: &mut GcReport,
) -> Result<()> {
    for (cache_id, name, limit) in state.db.size_limited_caches().await? {
        let size = state.db.cache_stored_size(cache_id).await?;
        if size > limit {
            let e = evict(state, Some((cache_id, name)), limit, size, pinned).await?;
            report.evicted_paths += e.evicted_paths;
            report.evictions.push(e);
        }
    }
    if let Some(limit) = state.config.garbage_collection.max_stored_size {
        let size = state.db.held_nars_size().await?;
        if size > limit {
            let e = evict(state, None, limit, size, pinned).await?;
            report.evicted_paths += e.evicted_paths;
            report.evictions.push(e);
        }
    }
    Ok(())
}

/// Evicts least recently used paths no pin holds until `size` is at most
/// `limit`. For a cache, each path counts its NAR's size; for the server, a
/// NAR counts once, freed when its last holder goes.
async fn evict(
    state: &AppState,
    cache: Option<(i64, String)>,
    limit: i64,
    size: i64,
    pinned: &mut Pinned,
) -> Result<Eviction> {
    let mut eviction = Eviction {
        cache: cache.as_ref().map(|(_, n)| n.clone()),
        limit,
        size_before: size,
        ..Eviction::default()
    };
    let mut excess = size - limit;
    let mut after = (i64::MIN, 0);
    let mut holders_left: HashMap<i64, i64> = HashMap::new();
    while excess > 0 {
        let page = state
            .db
            .least_recently_used(cache.as_ref().map(|(id, _)| *id), after, LRU_PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = (last.last_accessed_at, last.id);
        pinned.refresh(state).await?;
        let candidates: Vec<EvictionCandidate> = page
            .iter()
            .map(|p| {
                let is_pinned = pinned.holds(&p.id);
                let frees = match (&cache, is_pinned) {
                    (_, true) => 0,
                    (Some(_), false) => p.file_size,
                    (None, false) => {
                        let left = holders_left.entry(p.nar_id).or_insert(p.holders);
                        *left -= 1;
                        if *left == 0 {
                            p.file_size
                        } else {
                            0
                        }
                    }
                };
                EvictionCandidate {
                    path_id: p.id,
                    frees,
                    pinned: is_pinned,
                }
            })
            .collect();
        let (chosen, freed) = choose_evictions(&candidates, excess);
        let deleted = state.db.delete_unpinned_paths(&chosen, "evicted").await?;
        let chosen: HashSet<i64> = chosen.into_iter().collect();
        for p in page.iter().filter(|p| chosen.contains(&p.id)) {
            tracing::info!(
                cache = %p.cache_name,
                path = %p.store_path,
                last_accessed_at = p.last_accessed_at,
                limit,
                "gc: evicted, over the maximum stored size"
            );
            if eviction.paths.len() < REPORTED_PATHS {
                eviction.paths.push(p.store_path.clone());
            }
        }
        eviction.evicted_paths += deleted;
        eviction.evicted_bytes += freed;
        excess -= freed;
    }
    eviction.still_over = excess.max(0);
    if eviction.still_over > 0 {
        tracing::warn!(
            cache = eviction.cache.as_deref().unwrap_or("(server)"),
            limit,
            still_over = eviction.still_over,
            "gc: still over the maximum stored size: pins hold the rest"
        );
    }
    Ok(eviction)
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
