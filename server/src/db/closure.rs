//! Recording a closure statement: the stored paths it vouches for are
//! looked up, checked against it and indexed in one transaction, with the
//! statement and its ledger entry.

use sqlx::Row;
use std::collections::HashMap;

use super::commit::key_revoked;
use super::{ledger, placeholders, Db, DbResult, BATCH};

/// A closure statement the handler checked (key, signature, fields).
#[derive(Debug)]
pub struct NewClosureStatement {
    pub cache_id: i64,
    pub upload_key_row: i64,
    /// The signed text, zstd-compressed.
    pub compressed: Vec<u8>,
    pub signature: String,
    pub nonce: String,
    pub remember_until: i64,
    pub entries: Vec<ClosureEntry>,
}

#[derive(Debug)]
pub struct ClosureEntry {
    pub store_path_hash: String,
    pub store_path: String,
    /// `sha256:<nixbase32>`, as `nars.nar_hash` holds it.
    pub nar_hash: String,
    pub nar_size: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ClosureOutcome {
    /// Recorded for the `vouched` paths the cache holds as stated; the
    /// `missing` ones (store paths) it does not hold.
    Recorded { vouched: u64, missing: Vec<String> },
    /// The key was revoked before the commit: nothing was recorded.
    KeyRevoked,
    /// The cache holds a listed path otherwise (`field`: its store path,
    /// NAR hash or NAR size): refused, nothing recorded.
    Conflict {
        store_path: String,
        field: &'static str,
        stored: String,
    },
}

struct StoredPath {
    id: i64,
    store_path: String,
    nar_hash: String,
    nar_size: i64,
}

impl Db {
    pub async fn record_closure_statement(
        &self,
        st: &NewClosureStatement,
    ) -> DbResult<ClosureOutcome> {
        let mut tx = self.begin_write().await?;
        if key_revoked(&mut tx, self.backend, st.upload_key_row).await? {
            return Ok(ClosureOutcome::KeyRevoked);
        }
        let stored = stored_paths(&mut tx, st.cache_id, &st.entries).await?;
        let mut vouched = Vec::with_capacity(stored.len());
        let mut missing = Vec::new();
        for e in &st.entries {
            let Some(s) = stored.get(e.store_path_hash.as_str()) else {
                missing.push(e.store_path.clone());
                continue;
            };
            let conflict = if s.store_path != e.store_path {
                Some(("store_path", s.store_path.clone()))
            } else if s.nar_hash != e.nar_hash {
                Some(("nar_hash", s.nar_hash.clone()))
            } else if s.nar_size != e.nar_size {
                Some(("nar_size", s.nar_size.to_string()))
            } else {
                None
            };
            if let Some((field, stored)) = conflict {
                return Ok(ClosureOutcome::Conflict {
                    store_path: e.store_path.clone(),
                    field,
                    stored,
                });
            }
            vouched.push(s.id);
        }
        if vouched.is_empty() {
            // Nothing to vouch for: no record, but the statement is spent.
            ledger::spend_nonce(&mut tx, st.upload_key_row, &st.nonce, st.remember_until).await?;
        } else {
            ledger::record_closure_statement(&mut tx, st, &vouched).await?;
        }
        tx.commit().await?;
        Ok(ClosureOutcome::Recorded {
            vouched: vouched.len() as u64,
            missing,
        })
    }

    /// Forgets index rows of paths gone from their cache (the statements
    /// stay); returns how many.
    pub async fn purge_stale_vouches(&self) -> DbResult<u64> {
        let r = sqlx::query(
            "DELETE FROM vouches WHERE NOT EXISTS (SELECT 1 FROM paths o WHERE o.id = vouches.path_id)",
        )
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }
}

async fn stored_paths(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    cache_id: i64,
    entries: &[ClosureEntry],
) -> DbResult<HashMap<String, StoredPath>> {
    let mut out = HashMap::with_capacity(entries.len());
    for batch in entries.chunks(BATCH) {
        let sql = format!(
            "SELECT o.id, o.store_path_hash, o.store_path, n.nar_hash, n.nar_size
             FROM paths o JOIN nars n ON o.nar_id = n.id
             WHERE o.cache_id = $1 AND o.store_path_hash IN ({})",
            placeholders(2, batch.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(cache_id);
        for e in batch {
            q = q.bind(&e.store_path_hash);
        }
        for r in q.fetch_all(&mut **tx).await? {
            out.insert(
                r.try_get("store_path_hash")?,
                StoredPath {
                    id: r.try_get("id")?,
                    store_path: r.try_get("store_path")?,
                    nar_hash: r.try_get("nar_hash")?,
                    nar_size: r.try_get("nar_size")?,
                },
            );
        }
    }
    Ok(out)
}
