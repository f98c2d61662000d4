//! The statements garbage collection runs: expiring paths past their
//! retention, deleting NARs no cache holds, claiming and deleting chunks no
//! NAR uses, and telling which packs rows still name (for the sweep).

use sqlx::Row;
use std::collections::HashSet;

use super::{placeholders, Db, DbResult, BATCH};

impl Db {
    /// Deletes paths not accessed within their cache's retention period
    /// (`default_retention` seconds when the cache sets none; 0 keeps forever).
    pub async fn expire_paths(&self, default_retention: i64, now: i64) -> DbResult<u64> {
        let r = sqlx::query(
            "DELETE FROM paths WHERE id IN (
                SELECT o.id FROM paths o JOIN caches c ON o.cache_id = c.id
                WHERE COALESCE(c.retention_period, $1) > 0
                  AND o.last_accessed_at < $2 - COALESCE(c.retention_period, $1))",
        )
        .bind(default_retention)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// NAR bytes of every NAR held, and stored bytes of the valid chunks.
    pub async fn storage_totals(&self) -> DbResult<(i64, i64)> {
        let nar: i64 =
            sqlx::query_scalar("SELECT CAST(COALESCE(SUM(nar_size), 0) AS BIGINT) FROM nars")
                .fetch_one(&self.pool)
                .await?;
        let stored: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(file_size), 0) AS BIGINT) FROM chunks WHERE state = 'valid'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((nar, stored))
    }

    /// Deletes NARs no cache holds (their chunk lists go with them).
    pub async fn delete_orphan_nars(&self) -> DbResult<u64> {
        let r = sqlx::query(
            "DELETE FROM nars WHERE NOT EXISTS (SELECT 1 FROM paths o WHERE o.nar_id = nars.id)",
        )
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Claims unreferenced chunks unused since `cutoff` for deletion, plus any
    /// a previous GC run claimed but did not finish. An upload that touches a
    /// chunk first keeps it; one that comes after sees it claimed and retries.
    /// Returns the claimed rows (id, object key, stored size).
    pub async fn claim_orphan_chunks(&self, cutoff: i64) -> DbResult<Vec<(i64, String, i64)>> {
        sqlx::query(
            "UPDATE chunks SET state = 'deleting'
             WHERE state = 'valid' AND last_used_at < $1
               AND NOT EXISTS (SELECT 1 FROM nar_chunks nc WHERE nc.chunk_id = chunks.id)",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await?;
        let rows =
            sqlx::query("SELECT id, pack_key, file_size FROM chunks WHERE state = 'deleting'")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get("pack_key")?,
                    r.try_get("file_size")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Of `keys`, the objects some valid chunk is still stored in. Only the
    /// upload that wrote an object ever adds rows naming it, so an object
    /// none of whose rows is valid stays unused.
    pub async fn pack_keys_in_use(&self, keys: &[String]) -> DbResult<HashSet<String>> {
        self.pack_keys_named(keys, "state = 'valid' AND").await
    }

    pub async fn delete_chunk_rows(&self, ids: &[i64]) -> DbResult<()> {
        for batch in ids.chunks(BATCH) {
            let sql = format!(
                "DELETE FROM chunks WHERE id IN ({})",
                placeholders(1, batch.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in batch {
                q = q.bind(*id);
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Of `keys`, those a chunk row points at.
    pub async fn known_pack_keys(&self, keys: &[String]) -> DbResult<HashSet<String>> {
        self.pack_keys_named(keys, "").await
    }

    /// Of `keys`, those named by a chunk row matching `condition` (a fixed
    /// SQL fragment ending in AND, or empty).
    async fn pack_keys_named(
        &self,
        keys: &[String],
        condition: &'static str,
    ) -> DbResult<HashSet<String>> {
        let mut named = HashSet::new();
        for batch in keys.chunks(BATCH) {
            let sql = format!(
                "SELECT DISTINCT pack_key FROM chunks WHERE {condition} pack_key IN ({})",
                placeholders(1, batch.len())
            );
            let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
            for k in batch {
                q = q.bind(k);
            }
            named.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(named)
    }
}
