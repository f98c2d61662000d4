//! Chunk rows: the lookup that lets an upload reuse a stored chunk, and
//! the walks `--mode verify` makes over every stored chunk.

use sqlx::Row;

use super::{placeholders, Db, DbResult, BATCH};

/// `$1`: the chunk's hash (`chunk_hash::to_text`), `$2`: its compression.
pub(super) const VALID_CHUNK_SQL: &str =
    "SELECT id FROM chunks WHERE chunk_hash = $1 AND compression = $2 AND state = 'valid'";

impl Db {
    /// The id of a stored chunk that uploads may reuse.
    pub async fn valid_chunk(&self, hash: &str, compression: &str) -> DbResult<Option<i64>> {
        Ok(sqlx::query_scalar(VALID_CHUNK_SQL)
            .bind(hash)
            .bind(compression)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Valid chunks after `after` (by id), for verification.
    pub async fn stored_chunks(&self, after: i64, limit: i64) -> DbResult<Vec<StoredChunk>> {
        let rows = sqlx::query(
            "SELECT id, chunk_hash, compression, chunk_size, pack_key, pack_offset, file_size FROM chunks
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
                    pack_key: r.try_get("pack_key")?,
                    offset: r.try_get("pack_offset")?,
                    file_size: r.try_get("file_size")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// `cache: store path` of every path whose NAR uses one of `chunk_ids`.
    pub async fn paths_using_chunks(&self, chunk_ids: &[i64]) -> DbResult<Vec<String>> {
        let mut out = Vec::new();
        for batch in chunk_ids.chunks(BATCH) {
            let sql = format!(
                "SELECT DISTINCT c.name, o.store_path FROM nar_chunks nc
                 JOIN paths o ON o.nar_id = nc.nar_id JOIN caches c ON o.cache_id = c.id
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
    pub pack_key: String,
    pub offset: i64,
    pub file_size: i64,
}
