//! The statements garbage collection runs: expiring paths past their
//! retention, finding the least recently used past a size limit, deleting
//! NARs no cache holds, claiming and deleting chunks no NAR uses, and
//! telling which packs rows still name (for the sweep).

use sqlx::Row;
use std::collections::HashSet;

use super::{placeholders, Db, DbResult, BATCH};

/// A path in least-recently-used order, with what evicting it could free.
#[derive(Debug, Clone)]
pub struct LruPath {
    pub id: i64,
    pub cache_name: String,
    pub store_path: String,
    pub nar_id: i64,
    /// Compressed size of its NAR.
    pub file_size: i64,
    /// Paths (in any cache) that hold its NAR, this one included.
    pub holders: i64,
    pub last_accessed_at: i64,
}

impl Db {
    /// Up to `limit` paths after id `after` not accessed within their
    /// cache's retention period (`default_retention` seconds when the cache
    /// sets none; 0 keeps forever), by id.
    pub async fn expired_paths(
        &self,
        default_retention: i64,
        now: i64,
        after: i64,
        limit: i64,
    ) -> DbResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT o.id FROM paths o JOIN caches c ON o.cache_id = c.id
             WHERE COALESCE(c.retention_period, $1) > 0
               AND o.last_accessed_at < $2 - COALESCE(c.retention_period, $1)
               AND o.id > $3
             ORDER BY o.id LIMIT $4",
        )
        .bind(default_retention)
        .bind(now)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes paths by id, except a pinned path itself (pinned since the
    /// caller looked), and records each cache's deletions (`reason`:
    /// expired or evicted) in its ledger in the same transaction; returns
    /// how many were deleted. One short transaction per batch, so readers
    /// and writers are never held up for long.
    pub async fn delete_unpinned_paths(&self, ids: &[i64], reason: &str) -> DbResult<u64> {
        let mut deleted = 0;
        for batch in ids.chunks(BATCH) {
            let sql = format!(
                "DELETE FROM paths WHERE id IN ({})
                 AND NOT EXISTS (SELECT 1 FROM pins p WHERE p.cache_id = paths.cache_id
                                 AND p.store_path_hash = paths.store_path_hash)
                 RETURNING cache_id, store_path",
                placeholders(1, batch.len())
            );
            let mut tx = self.begin_write().await?;
            let mut q = sqlx::query_as::<_, (i64, String)>(sqlx::AssertSqlSafe(sql));
            for id in batch {
                q = q.bind(*id);
            }
            let gone = q.fetch_all(&mut *tx).await?;
            let mut by_cache: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
            for (cache_id, store_path) in gone {
                by_cache.entry(cache_id).or_default().push(store_path);
            }
            for (cache_id, mut paths) in by_cache {
                paths.sort();
                deleted += paths.len() as u64;
                super::ledger::record_path_deletion(&mut tx, cache_id, reason, "gc", &paths)
                    .await?;
            }
            tx.commit().await?;
        }
        Ok(deleted)
    }

    /// Of `hashes`, the paths `cache_id` holds: (id, references as stored).
    pub async fn path_references(
        &self,
        cache_id: i64,
        hashes: &[String],
    ) -> DbResult<Vec<(i64, String)>> {
        let mut found = Vec::new();
        for batch in hashes.chunks(BATCH) {
            let sql = format!(
                "SELECT id, refs FROM paths WHERE cache_id = $1 AND store_path_hash IN ({})",
                placeholders(2, batch.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(cache_id);
            for h in batch {
                q = q.bind(h);
            }
            for r in q.fetch_all(&self.pool).await? {
                found.push((r.try_get("id")?, r.try_get("refs")?));
            }
        }
        Ok(found)
    }

    /// Caches with a maximum stored size of their own: (id, name, bytes).
    pub async fn size_limited_caches(&self) -> DbResult<Vec<(i64, String, i64)>> {
        let rows = sqlx::query(
            "SELECT id, name, max_stored_size FROM caches WHERE max_stored_size IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get("name")?,
                    r.try_get("max_stored_size")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// A cache's stored size: the compressed size of the NAR of each path it
    /// holds (what the cache would take up on its own).
    pub async fn cache_stored_size(&self, cache_id: i64) -> DbResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(n.file_size), 0) AS BIGINT)
             FROM paths o JOIN nars n ON n.id = o.nar_id WHERE o.cache_id = $1",
        )
        .bind(cache_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The server's stored size: the compressed size of every NAR some
    /// cache holds, each counted once.
    pub async fn held_nars_size(&self) -> DbResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(file_size), 0) AS BIGINT) FROM nars
             WHERE EXISTS (SELECT 1 FROM paths o WHERE o.nar_id = nars.id)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Up to `limit` paths (of one cache, or of all) after `after` in
    /// least-recently-used order (last access, then id).
    pub async fn least_recently_used(
        &self,
        cache_id: Option<i64>,
        after: (i64, i64),
        limit: i64,
    ) -> DbResult<Vec<LruPath>> {
        // Two statements, not `$1 IS NULL`: PostgreSQL cannot type a
        // parameter used only that way. Placeholders are numbered in order
        // of first appearance, as SQLite reads them.
        let (filter, n) = match cache_id {
            Some(_) => ("o.cache_id = $1 AND", 1),
            None => ("", 0),
        };
        let sql = format!(
            "SELECT o.id, o.cache_id, c.name AS cache_name, o.store_path, o.nar_id,
                    n.file_size, o.last_accessed_at,
                    (SELECT CAST(COUNT(*) AS BIGINT) FROM paths p2 WHERE p2.nar_id = o.nar_id) AS holders
             FROM paths o JOIN nars n ON n.id = o.nar_id JOIN caches c ON c.id = o.cache_id
             WHERE {filter} (o.last_accessed_at > ${a} OR (o.last_accessed_at = ${a} AND o.id > ${b}))
             ORDER BY o.last_accessed_at, o.id LIMIT ${l}",
            a = n + 1,
            b = n + 2,
            l = n + 3,
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(id) = cache_id {
            q = q.bind(id);
        }
        let q = q.bind(after.0).bind(after.1).bind(limit);
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(LruPath {
                    id: r.try_get("id")?,
                    cache_name: r.try_get("cache_name")?,
                    store_path: r.try_get("store_path")?,
                    nar_id: r.try_get("nar_id")?,
                    file_size: r.try_get("file_size")?,
                    holders: r.try_get("holders")?,
                    last_accessed_at: r.try_get("last_accessed_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
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
