//! `provenixd --mode verify` for the transparency logs: each log rebuilt
//! from its entries alone (`tree::Rebuild`, bounded memory) and compared
//! with what the server stored and serves: every stored hash (what tiles
//! are made of), the head's root, both checkpoints' signatures, sizes and
//! roots; and every entry compared with the entry its record makes now,
//! so an entry or a record edited after it was logged is found.

use provenix_provenance::tlog::checkpoint;
use provenix_provenance::tlog::tree::{self, Rebuild};
use serde::Serialize;
use std::collections::HashSet;

use super::log::{read_hashes, INTEGRATE_BATCH};
use super::log_entry::entry_for;
use super::{Db, DbResult};

/// Problems reported per log at most: a log damaged throughout says so
/// in a bounded report.
const MAX_PROBLEMS: usize = 20;

#[derive(Debug, Serialize)]
pub struct LogCheck {
    pub cache: String,
    pub size: i64,
    pub problems: Vec<String>,
}

impl LogCheck {
    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        }
    }
}

impl Db {
    /// Rebuilds the log of `cache_id` and compares; none if it has no log.
    pub async fn check_log(&self, cache_id: i64, cache: &str) -> DbResult<Option<LogCheck>> {
        let Some(head) = self.log_head(cache_id).await? else {
            return Ok(None);
        };
        let mut check = LogCheck {
            cache: cache.to_string(),
            size: head.size,
            problems: Vec::new(),
        };
        let keys = self.log_verifier_keys(cache_id).await?;
        let verify_note = |note: &str| {
            keys.iter().find_map(|(origin, vkey, _)| {
                checkpoint::verify(note.as_bytes(), vkey, origin).ok()
            })
        };
        let mut rebuild = Rebuild::default();
        let mut published_root = (head.published_size == 0).then(tree::empty_root);
        while (rebuild.size as i64) < head.size {
            let start = rebuild.size as i64;
            let end = (start + INTEGRATE_BATCH).min(head.size);
            let stored = self.log_entries(cache_id, start, end).await?;
            if stored.len() as i64 != end - start {
                check.problem(format!(
                    "entries {start} to {end}: {} stored, {} expected",
                    stored.len(),
                    end - start
                ));
                break;
            }
            let ledger: Vec<(i64, String, i64, i64)> = sqlx::query_as(
                "SELECT seq, kind, record_id, created_at FROM ledger
                 WHERE cache_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
            )
            .bind(cache_id)
            .bind(start)
            .bind(end)
            .fetch_all(&self.pool)
            .await?;
            let mut tx = self.pool.begin().await?;
            for (i, entry) in stored.iter().enumerate() {
                let idx = start + i as i64;
                match ledger.get(i) {
                    Some((seq, kind, record_id, at)) if *seq == idx + 1 => {
                        let remade = entry_for(&mut tx, cache_id, cache, kind, *record_id, *at)
                            .await
                            .map(|e| e.encode());
                        match remade {
                            Ok(bytes) if bytes == entry.as_bytes() => {}
                            Ok(_) => check.problem(format!(
                                "entry {idx} is not the entry its record ({kind} {record_id}) makes: the entry or the record was changed"
                            )),
                            Err(e) => check.problem(format!("entry {idx}: {e}")),
                        }
                    }
                    _ => check.problem(format!("entry {idx} has no ledger entry")),
                }
            }
            tx.commit().await?;
            let bytes: Vec<Vec<u8>> = stored.into_iter().map(String::into_bytes).collect();
            let appended = match rebuild.append(&bytes) {
                Ok(a) => a,
                Err(e) => {
                    check.problem(format!("entries {start} to {end}: {e}"));
                    break;
                }
            };
            let indexes: Vec<u64> = appended.stored.iter().map(|(i, _)| *i).collect();
            let mut conn = self.pool.acquire().await?;
            let kept = match read_hashes(&mut conn, cache_id, &indexes).await {
                Ok(k) => k,
                Err(super::DbError::Corrupt(e)) => {
                    check.problem(format!("entries {start} to {end}: stored hashes: {e}"));
                    break;
                }
                Err(e) => return Err(e),
            };
            let mut differing = HashSet::new();
            for (i, h) in &appended.stored {
                if kept.get(*i) != Some(*h) {
                    differing.insert(*i);
                }
            }
            if !differing.is_empty() {
                check.problem(format!(
                    "entries {start} to {end}: {} stored hashes differ from the entries' (tiles serve them)",
                    differing.len()
                ));
            }
            if appended.size as i64 == head.published_size {
                published_root = Some(appended.root);
            }
            if appended.size as i64 == head.size && appended.root != head.root {
                check.problem("the head's root is not the root of the entries".into());
            }
        }
        for (what, note, size, root) in [
            ("latest", &head.checkpoint, head.size, Some(head.root)),
            (
                "published",
                &head.published,
                head.published_size,
                published_root,
            ),
        ] {
            if note.is_empty() {
                if size > 0 {
                    check.problem(format!("the {what} checkpoint is missing"));
                }
                continue;
            }
            match verify_note(note) {
                None => check.problem(format!(
                    "the {what} checkpoint is not signed by any of the log's keys"
                )),
                Some(cp) if cp.size as i64 != size || Some(cp.root) != root => check.problem(
                    format!("the {what} checkpoint is not of the tree the entries make"),
                ),
                Some(_) => {}
            }
        }
        Ok(Some(check))
    }
}
