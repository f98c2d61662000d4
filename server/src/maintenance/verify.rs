//! `provenixd --mode verify`: reads every stored chunk back (its range of
//! the pack it is stored in), checks it is there and hashes to its recorded
//! hash (`chunk_hash.rs`) and size, and names the paths a damaged chunk
//! would break; and rebuilds every cache's transparency log from its
//! entries and compares it with what is stored and served
//! (`db/log_check.rs`), and each full tile kept in storage with what the
//! database rebuilds (`serve/stored_tiles.rs`). Exits non-zero when
//! anything is damaged.

use anyhow::Result;
use futures::StreamExt;
use serde::Serialize;

use crate::serve::stored_tiles;
use crate::state::AppState;

/// Problems reported per log at most, stored tiles included.
const LOG_TILE_PROBLEMS: usize = 20;

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub checked_chunks: u64,
    /// Chunks missing or corrupt.
    pub damaged_chunks: u64,
    /// Keys of objects that are not stored (each once).
    pub missing: Vec<String>,
    /// Keys of objects holding a chunk that does not match its recorded hash
    /// or size (each once).
    pub corrupt: Vec<String>,
    /// `cache: store path` of every path whose NAR uses a damaged chunk.
    pub damaged_paths: Vec<String>,
    /// Each log checked, with what was found wrong in it.
    pub logs: Vec<crate::db::log_check::LogCheck>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.corrupt.is_empty()
            && self.logs.iter().all(|l| l.problems.is_empty())
    }
}

enum Damage {
    Missing,
    Corrupt,
}

async fn check(state: &AppState, c: &crate::db::chunks::StoredChunk) -> Option<Damage> {
    let range = c.offset as u64..(c.offset + c.file_size) as u64;
    let data = match state.storage.get_range(&c.pack_key, range).await {
        Ok(d) => d,
        Err(e) => {
            let not_found = e
                .chain()
                .any(|c| matches!(c.downcast_ref(), Some(object_store::Error::NotFound { .. })));
            return Some(if not_found {
                Damage::Missing
            } else {
                Damage::Corrupt
            });
        }
    };
    let compression = c.compression.clone();
    let chunk_hash = c.chunk_hash.clone();
    // (whether the bytes hash to the recorded hash, their size)
    let decoded = tokio::task::spawn_blocking(move || {
        let raw = match compression.as_str() {
            "zstd" => zstd::decode_all(&data[..]).ok()?,
            _ => data.to_vec(),
        };
        Some((
            crate::push::chunk_hash::matches(&chunk_hash, &raw),
            raw.len() as i64,
        ))
    })
    .await
    .ok()
    .flatten();
    match decoded {
        Some((true, size)) if size == c.chunk_size => None,
        // Does not decompress, or not to what was stored.
        _ => Some(Damage::Corrupt),
    }
}

pub async fn run(state: &AppState) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let mut damaged_ids = Vec::new();
    let mut after = 0;
    loop {
        let page = state.db.stored_chunks(after, 500).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let results: Vec<_> = futures::stream::iter(page.iter())
            .map(|c| async move { (c, check(state, c).await) })
            .buffer_unordered(8)
            .collect()
            .await;
        for (c, damage) in results {
            report.checked_chunks += 1;
            if damage.is_some() {
                report.damaged_chunks += 1;
            }
            match damage {
                Some(Damage::Missing) => report.missing.push(c.pack_key.clone()),
                Some(Damage::Corrupt) => report.corrupt.push(c.pack_key.clone()),
                None => continue,
            }
            damaged_ids.push(c.id);
        }
    }
    report.missing.sort();
    report.missing.dedup();
    report.corrupt.sort();
    report.corrupt.dedup();
    report.damaged_paths = state.db.paths_using_chunks(&damaged_ids).await?;
    for c in state.db.all_caches().await? {
        if let Some(mut check) = state.db.check_log(c.id, &c.name).await? {
            let room = LOG_TILE_PROBLEMS.saturating_sub(check.problems.len());
            for (key, wrong) in stored_tiles::damaged(state, c.id, check.size as u64, room).await? {
                check.problems.push(format!("stored tile {key}: {wrong}"));
            }
            for p in &check.problems {
                tracing::error!(cache = %c.name, "transparency log: {p}");
            }
            report.logs.push(check);
        }
    }
    Ok(report)
}
