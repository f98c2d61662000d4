//! Chunk lookups for ingest, and the statements garbage collection runs.

use sqlx::Row;
use std::collections::HashSet;

use super::{placeholders, Db, BATCH};

/// `$1`: the chunk's hash (`chunk_hash::to_text`), `$2`: its compression.
pub(super) const VALID_CHUNK_SQL: &str =
    "SELECT id FROM chunks WHERE chunk_hash = $1 AND compression = $2 AND state = 'valid'";

impl Db {
    /// The id of a stored chunk that uploads may reuse.
    pub async fn valid_chunk(
        &self,
        hash: &str,
        compression: &str,
    ) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(VALID_CHUNK_SQL)
            .bind(hash)
            .bind(compression)
            .fetch_optional(&self.pool)
            .await
    }

    /// Deletes paths not accessed within their cache's retention period
    /// (`default_retention` seconds when the cache sets none; 0 keeps forever).
    pub async fn expire_objects(
        &self,
        default_retention: i64,
        now: i64,
    ) -> Result<u64, sqlx::Error> {
        let r = sqlx::query(
            "DELETE FROM objects WHERE id IN (
                SELECT o.id FROM objects o JOIN caches c ON o.cache_id = c.id
                WHERE COALESCE(c.retention_period, $1) > 0
                  AND o.last_accessed_at < $2 - COALESCE(c.retention_period, $1))",
        )
        .bind(default_retention)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Deletes NARs no cache holds (their chunk lists go with them).
    pub async fn delete_orphan_nars(&self) -> Result<u64, sqlx::Error> {
        let r = sqlx::query(
            "DELETE FROM nars WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.nar_id = nars.id)",
        )
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Claims unreferenced chunks unused since `cutoff` for deletion, plus any
    /// a previous GC run claimed but did not finish. An upload that touches a
    /// chunk first keeps it; one that comes after sees it claimed and retries.
    /// Returns the claimed rows (id, object key).
    pub async fn claim_orphan_chunks(
        &self,
        cutoff: i64,
    ) -> Result<Vec<(i64, String)>, sqlx::Error> {
        sqlx::query(
            "UPDATE chunks SET state = 'deleting'
             WHERE state = 'valid' AND last_used_at < $1
               AND NOT EXISTS (SELECT 1 FROM nar_chunks nc WHERE nc.chunk_id = chunks.id)",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await?;
        let rows = sqlx::query("SELECT id, object_key FROM chunks WHERE state = 'deleting'")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("object_key")?)))
            .collect()
    }

    /// Of `keys`, the objects some valid chunk is still stored in. Only the
    /// upload that wrote an object ever adds rows naming it, so an object
    /// none of whose rows is valid stays unused.
    pub async fn object_keys_in_use(
        &self,
        keys: &[String],
    ) -> Result<HashSet<String>, sqlx::Error> {
        self.object_keys_named(keys, "state = 'valid' AND").await
    }

    pub async fn delete_chunk_rows(&self, ids: &[i64]) -> Result<(), sqlx::Error> {
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
    pub async fn known_object_keys(&self, keys: &[String]) -> Result<HashSet<String>, sqlx::Error> {
        self.object_keys_named(keys, "").await
    }

    /// Of `keys`, those named by a chunk row matching `condition` (a fixed
    /// SQL fragment ending in AND, or empty).
    async fn object_keys_named(
        &self,
        keys: &[String],
        condition: &'static str,
    ) -> Result<HashSet<String>, sqlx::Error> {
        let mut named = HashSet::new();
        for batch in keys.chunks(BATCH) {
            let sql = format!(
                "SELECT DISTINCT object_key FROM chunks WHERE {condition} object_key IN ({})",
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

    /// Valid chunks after `after` (by id), for verification.
    pub async fn stored_chunks(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredChunk>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, chunk_hash, compression, chunk_size, object_key, object_offset, file_size FROM chunks
             WHERE state = 'valid' AND id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredChunk {
                    id: r.try_get("id")?,
                    chunk_hash: r.try_get("chunk_hash")?,
                    compression: r.try_get("compression")?,
                    chunk_size: r.try_get("chunk_size")?,
                    object_key: r.try_get("object_key")?,
                    offset: r.try_get("object_offset")?,
                    file_size: r.try_get("file_size")?,
                })
            })
            .collect()
    }

    /// `cache: store path` of every path whose NAR uses one of `chunk_ids`.
    pub async fn paths_using_chunks(&self, chunk_ids: &[i64]) -> Result<Vec<String>, sqlx::Error> {
        let mut out = Vec::new();
        for batch in chunk_ids.chunks(BATCH) {
            let sql = format!(
                "SELECT DISTINCT c.name, o.store_path FROM nar_chunks nc
                 JOIN objects o ON o.nar_id = nc.nar_id JOIN caches c ON o.cache_id = c.id
                 WHERE nc.chunk_id IN ({})",
                placeholders(1, batch.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in batch {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&self.pool).await? {
                let cache: String = r.try_get("name")?;
                let path: String = r.try_get("store_path")?;
                out.push(format!("{cache}: {path}"));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

#[derive(Debug, Clone)]
pub struct StoredChunk {
    pub id: i64,
    pub chunk_hash: String,
    pub compression: String,
    pub chunk_size: i64,
    pub object_key: String,
    pub offset: i64,
    pub file_size: i64,
}
