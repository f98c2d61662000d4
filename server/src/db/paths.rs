//! Store paths in caches (the `paths` table): reading them, the missing
//! ones, the caches that hold a NAR, deleting one. What makes a path visible
//! is `commit.rs`.

use sqlx::Row;

use super::{placeholders, Db, DbResult, BATCH};

#[derive(Debug, Clone)]
pub struct PathRow {
    pub id: i64,
    pub store_path: String,
    pub nar_id: i64,
    pub nar_hash: String,
    pub nar_size: i64,
    pub compression: String,
    pub file_size: i64,
    /// References as stored (a JSON array): parsed only when a narinfo is
    /// rendered, not on every lookup (most narinfo requests are served from
    /// the memo of signed bodies).
    pub refs_json: String,
    pub deriver: Option<String>,
    pub ca: Option<String>,
    pub last_accessed_at: i64,
}

impl PathRow {
    pub fn refs(&self) -> Vec<String> {
        serde_json::from_str(&self.refs_json).unwrap_or_default()
    }
}

/// `id_column`: what the object's id is called in a row that joins more.
pub(super) fn path_from_row(
    r: &sqlx::any::AnyRow,
    id_column: &str,
) -> Result<PathRow, sqlx::Error> {
    Ok(PathRow {
        id: r.try_get(id_column)?,
        store_path: r.try_get("store_path")?,
        nar_id: r.try_get("nar_id")?,
        nar_hash: r.try_get("nar_hash")?,
        nar_size: r.try_get("nar_size")?,
        compression: r.try_get("compression")?,
        file_size: r.try_get("file_size")?,
        refs_json: r.try_get("refs")?,
        deriver: r.try_get("deriver")?,
        ca: r.try_get("ca")?,
        last_accessed_at: r.try_get("last_accessed_at")?,
    })
}

impl Db {
    /// Marks a path as accessed, for retention-based GC.
    pub async fn touch_path(&self, id: i64, now: i64) -> DbResult<()> {
        sqlx::query("UPDATE paths SET last_accessed_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Of `hashes`, those the cache does not hold.
    pub async fn missing_paths(&self, cache_id: i64, hashes: &[String]) -> DbResult<Vec<String>> {
        let mut present = std::collections::HashSet::new();
        for batch in hashes.chunks(BATCH) {
            let sql = format!(
                "SELECT store_path_hash FROM paths WHERE cache_id = $1 AND store_path_hash IN ({})",
                placeholders(2, batch.len())
            );
            let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind(cache_id);
            for h in batch {
                q = q.bind(h);
            }
            present.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(hashes
            .iter()
            .filter(|h| !present.contains(*h))
            .cloned()
            .collect())
    }

    /// Names of the caches that hold a NAR (for the proof-of-possession rule).
    pub async fn caches_holding_nar(&self, nar_id: i64) -> DbResult<Vec<super::caches::CacheRow>> {
        let rows = sqlx::query(
            "SELECT DISTINCT c.id, c.name, c.is_public, c.priority, c.store_dir, c.upstream_cache_key_names, c.retention_period
             FROM paths o JOIN caches c ON o.cache_id = c.id WHERE o.nar_id = $1",
        )
        .bind(nar_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(super::caches::cache_from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Deletes one path and records it in the cache's ledger (by `actor`),
    /// in one transaction; false if the cache does not hold it.
    pub async fn delete_path(
        &self,
        cache_id: i64,
        store_path_hash: &str,
        actor: &str,
    ) -> DbResult<bool> {
        let mut tx = self.begin_write().await?;
        let gone: Option<String> = sqlx::query_scalar(
            "DELETE FROM paths WHERE cache_id = $1 AND store_path_hash = $2 RETURNING store_path",
        )
        .bind(cache_id)
        .bind(store_path_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(store_path) = gone else {
            return Ok(false);
        };
        super::ledger::record_path_deletion(&mut tx, cache_id, "deleted", actor, &[store_path])
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
