//! Full tiles and entry bundles of each log kept in storage beside the
//! packs, under `tlog/<cache id>/<tile path>`, so the log is served like
//! NARs are (from the local disk or S3) and scales the same way. A full
//! tile never changes, so the first request for it builds it from the
//! database and stores it, and every later one (on any replica) reads it
//! back; partial tiles are built. Either is then kept in memory
//! (`tile_memo`) while it fits. A stored tile that differs from what the
//! database rebuilds is named by `--mode verify`.

use bytes::Bytes;
use futures::StreamExt;
use provenix_provenance::tlog::tiles::{self, TilePath};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Where the logs' tiles live in storage (packs are under `chunks/`).
pub const TILE_PREFIX: &str = "tlog";

/// Full bundles built at once: each is up to 16 MiB (256 entries of up
/// to 64 KiB), so this bounds what concurrent requests hold.
static BUNDLE_BUILDS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// The storage key of a full tile of the log of `cache_id`. Cache ids are
/// never reused, so a re-created cache's log never meets an old one's.
pub fn storage_key(cache_id: i64, tile: &TilePath) -> String {
    format!("{TILE_PREFIX}/{cache_id}/{}", tile.path())
}

/// The tile's bytes: from memory when asked before, else from storage
/// when it is full and stored, else built from the database (and stored,
/// when full). A storage that fails is logged and passed over: the
/// database can always answer.
/// `keep`: whether to remember it in memory (full tiles and the tree's
/// edge: a flood of narrower partial tiles, each valid, would otherwise
/// push out the ones readers ask for, found by the attack review).
pub async fn tile_bytes(
    state: &AppState,
    cache_id: i64,
    tile: &TilePath,
    keep: bool,
) -> ApiResult<Bytes> {
    let path = tile.path();
    if let Some(bytes) = state.tile_memo.tile(cache_id, &path) {
        return Ok(bytes);
    }
    let bytes = from_storage_or_database(state, cache_id, tile).await?;
    if keep {
        state.tile_memo.keep_tile(cache_id, &path, &bytes);
    }
    Ok(bytes)
}

async fn from_storage_or_database(
    state: &AppState,
    cache_id: i64,
    tile: &TilePath,
) -> ApiResult<Bytes> {
    if !tile.is_full() {
        return build(state, cache_id, tile).await.map(Bytes::from);
    }
    let key = storage_key(cache_id, tile);
    match state.storage.get(&key).await {
        Ok(Some(bytes)) => return Ok(bytes),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!("transparency log tile {key}: {e:#}; building it from the database")
        }
    }
    let bytes = Bytes::from(build(state, cache_id, tile).await?);
    // Written whole or not at all (object_store renames into place on the
    // local disk; an S3 PUT is atomic), so a reader never sees half a tile.
    if let Err(e) = state.storage.put_parts(&key, vec![bytes.clone()]).await {
        tracing::warn!("transparency log tile {key}: not stored: {e:#}");
    }
    Ok(bytes)
}

/// The tile as the log's rows in the database make it.
pub async fn build(state: &AppState, cache_id: i64, tile: &TilePath) -> ApiResult<Vec<u8>> {
    let path = tile.path();
    if tile.is_bundle() {
        let _turn = BUNDLE_BUILDS.acquire().await.map_err(ApiError::internal)?;
        let records = tile.records();
        let entries = state
            .db
            .log_entries(cache_id, records.start as i64, records.end as i64)
            .await?;
        if entries.len() as u64 != records.end - records.start {
            return Err(ApiError::internal(format!(
                "{path}: the log lacks entries it integrated"
            )));
        }
        tiles::bundle(&entries).ok_or_else(|| {
            ApiError::internal(format!("{path}: an entry is larger than a bundle holds"))
        })
    } else {
        let hashes = state.db.log_hashes(cache_id, &tile.hash_indexes()).await?;
        tile.hash_data(&hashes)
            .map_err(|e| ApiError::internal(format!("{path}: {e}")))
    }
}

/// Each stored tile of the log of `cache_id` (of `size` entries) that is
/// not what the database rebuilds, or is not a full tile of that log:
/// `(storage key, what is wrong)`, at most `max`.
pub async fn damaged(
    state: &AppState,
    cache_id: i64,
    size: u64,
    max: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let prefix = format!("{TILE_PREFIX}/{cache_id}/");
    let mut listing = state.storage.list(&prefix);
    let mut found = Vec::new();
    while let Some(object) = listing.next().await {
        if found.len() >= max {
            break;
        }
        let (key, _) = object?;
        let rest = key.strip_prefix(&prefix).unwrap_or(&key);
        let tile = match TilePath::parse(rest) {
            Ok(t) if t.is_full() && t.check_in_tree(size).is_ok() => t,
            _ => {
                found.push((key, "not a full tile of the log".to_string()));
                continue;
            }
        };
        let stored = state.storage.get(&key).await?.unwrap_or_default();
        let rebuilt = build(state, cache_id, &tile)
            .await
            .map_err(|e| anyhow::anyhow!("{key}: {}", e.message))?;
        if stored[..] != rebuilt[..] {
            found.push((
                key,
                "differs from the log's entries (delete it to have it rebuilt)".to_string(),
            ));
        }
    }
    Ok(found)
}

/// Removes the stored tiles of a destroyed cache's log.
pub async fn remove_all(state: &AppState, cache_id: i64) -> anyhow::Result<()> {
    let prefix = format!("{TILE_PREFIX}/{cache_id}/");
    let keys: Vec<String> = state
        .storage
        .list(&prefix)
        .map(|o| o.map(|(k, _)| k))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    for key in keys {
        state.storage.delete(&key).await?;
    }
    Ok(())
}
