//! NARs and their chunk lists: one NAR row per distinct NAR hash, shared by
//! every cache, and where each of its chunks lies in the packs.

use sqlx::Row;

use super::{Db, DbResult};

/// A page of a NAR's chunk locations, in order (columns by position).
pub(super) const NAR_CHUNKS_SQL: &str = "SELECT c.pack_key, c.pack_offset, c.file_size
     FROM nar_chunks nc JOIN chunks c ON nc.chunk_id = c.id
     WHERE nc.nar_id = $1 AND nc.seq >= $2 ORDER BY nc.seq LIMIT $3";

/// Where a stored chunk's bytes are: `file_size` bytes at `offset` of the
/// object `pack_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkLocation {
    pub pack_key: String,
    pub offset: i64,
    pub file_size: i64,
}

impl Db {
    pub async fn nar_id_by_hash(&self, nar_hash: &str) -> DbResult<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM nars WHERE nar_hash = $1")
                .bind(nar_hash)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The ids of the NARs of `nar_hashes` the server holds, by hash.
    pub async fn nar_ids_by_hash(
        &self,
        nar_hashes: &[String],
    ) -> DbResult<std::collections::HashMap<String, i64>> {
        let mut out = std::collections::HashMap::new();
        for batch in nar_hashes.chunks(super::BATCH) {
            let sql = format!(
                "SELECT nar_hash, id FROM nars WHERE nar_hash IN ({})",
                super::placeholders(1, batch.len())
            );
            let mut q = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql));
            for h in batch {
                q = q.bind(h);
            }
            out.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(out)
    }

    /// Up to `limit` chunks of a NAR from position `from` on, in order.
    pub async fn nar_chunks(
        &self,
        nar_id: i64,
        from: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<ChunkLocation>> {
        if let Some(reader) = self.sqlite_reader.clone() {
            // A page is ~1,000 rows: one blocking-pool hop, not sqlx's
            // worker-thread round trip (a tenth of a pull's CPU).
            return tokio::task::spawn_blocking(move || reader.nar_chunks(nar_id, from, limit))
                .await?;
        }
        let rows = sqlx::query(NAR_CHUNKS_SQL)
            .bind(nar_id)
            .bind(from)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let chunks = rows
            .iter()
            .map(|r| {
                Ok(ChunkLocation {
                    pack_key: r.try_get(0)?,
                    offset: r.try_get(1)?,
                    file_size: r.try_get(2)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(chunks)
    }
}
