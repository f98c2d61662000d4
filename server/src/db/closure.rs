//! Recording a closure statement: the stored paths it vouches for are
//! looked up, checked against it and indexed in one transaction, with the
//! statement and its ledger entry.

use sqlx::Row;
use std::collections::HashMap;

use provenix_provenance::closure::metadata_digest;

use super::commit::key_revoked;
use super::{ledger, placeholders, Db, DbResult, BATCH};

/// A closure statement the handler checked (key, signature, fields).
#[derive(Debug)]
pub struct NewClosureStatement {
    pub cache_id: i64,
    pub upload_key_row: i64,
    /// The signed text, and zstd-compressed as the record keeps it.
    pub text: String,
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
    /// `closure::metadata_digest` of references, deriver and CA.
    pub metadata: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ClosureOutcome {
    /// Recorded: the cache holds every listed path as stated.
    Recorded { vouched: u64 },
    /// Some listed paths are not in the cache (store paths): nothing was
    /// recorded (the nonce is spent); the client vouches again for the rest.
    Missing { missing: Vec<String> },
    /// The key was revoked before the commit: nothing was recorded.
    KeyRevoked,
    /// The cache holds listed paths with another NAR: refused, each kept
    /// as a divergence (the statement's text as the claim).
    Diverged { store_paths: Vec<String> },
    /// The cache holds a listed path with this NAR but otherwise (`field`:
    /// its store path name, NAR size, or references, deriver and CA):
    /// refused, nothing recorded.
    Mismatch {
        store_path: String,
        field: &'static str,
    },
}

struct StoredPath {
    id: i64,
    store_path: String,
    nar_hash: String,
    nar_size: i64,
    metadata: String,
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
        let mut diverged = Vec::new();
        for e in &st.entries {
            let Some(s) = stored.get(e.store_path_hash.as_str()) else {
                missing.push(e.store_path.clone());
                continue;
            };
            if s.nar_hash != e.nar_hash {
                diverged.push((e, s.nar_hash.clone()));
                continue;
            }
            let field = if s.store_path != e.store_path {
                Some("store path")
            } else if s.nar_size != e.nar_size {
                Some("NAR size")
            } else if s.metadata != e.metadata {
                Some("references, deriver or CA")
            } else {
                None
            };
            if let Some(field) = field {
                return Ok(ClosureOutcome::Mismatch {
                    store_path: e.store_path.clone(),
                    field,
                });
            }
            vouched.push(s.id);
        }
        if !diverged.is_empty() {
            // Kept for auditors as an upload's divergence is: who claimed
            // another build of a path the cache serves.
            ledger::record_closure_divergences(&mut tx, st, &diverged).await?;
            tx.commit().await?;
            return Ok(ClosureOutcome::Diverged {
                store_paths: diverged.iter().map(|(e, _)| e.store_path.clone()).collect(),
            });
        }
        // Only a statement the cache holds every path of is kept: its text
        // is then all vouches, and nobody stores text for paths not there.
        if !missing.is_empty() {
            ledger::spend_nonce(&mut tx, st.upload_key_row, &st.nonce, st.remember_until).await?;
            tx.commit().await?;
            return Ok(ClosureOutcome::Missing { missing });
        }
        ledger::record_closure_statement(&mut tx, st, &vouched).await?;
        tx.commit().await?;
        Ok(ClosureOutcome::Recorded {
            vouched: vouched.len() as u64,
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
            "SELECT o.id, o.store_path_hash, o.store_path, n.nar_hash, n.nar_size, o.refs, o.deriver, o.ca
             FROM paths o JOIN nars n ON o.nar_id = n.id
             WHERE o.cache_id = $1 AND o.store_path_hash IN ({})",
            placeholders(2, batch.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(cache_id);
        for e in batch {
            q = q.bind(&e.store_path_hash);
        }
        for r in q.fetch_all(&mut **tx).await? {
            let refs: String = r.try_get("refs")?;
            let refs: Vec<String> = serde_json::from_str(&refs).unwrap_or_default();
            let deriver: Option<String> = r.try_get("deriver")?;
            let ca: Option<String> = r.try_get("ca")?;
            out.insert(
                r.try_get("store_path_hash")?,
                StoredPath {
                    id: r.try_get("id")?,
                    store_path: r.try_get("store_path")?,
                    nar_hash: r.try_get("nar_hash")?,
                    nar_size: r.try_get("nar_size")?,
                    metadata: metadata_digest(&refs, deriver.as_deref(), ca.as_deref()),
                },
            );
        }
    }
    Ok(out)
}
