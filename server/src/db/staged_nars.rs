//! NAR files `nix copy --to` PUT before their narinfo (push/nix_copy.rs):
//! staged until the narinfo names them, then ingested as one upload.

use sqlx::Row;

use super::{Db, DbResult};

#[derive(Debug, PartialEq, Eq)]
pub enum Staged {
    /// This PUT's object is the staged file now.
    New,
    /// The same file (same name: same SHA-256) was staged already, under
    /// the id given; this PUT's object is redundant.
    Already(String),
}

#[derive(Debug, Clone)]
pub struct StagedNar {
    pub id: String,
    pub file_size: i64,
}

impl Db {
    pub async fn stage_nar(
        &self,
        id: &str,
        cache_id: i64,
        file: &str,
        file_size: i64,
        uploaded_by: &str,
    ) -> DbResult<Staged> {
        let now = crate::clock::now();
        // A file staged already stays (its bytes are these bytes); its age
        // restarts, as a new PUT of it says it is still wanted.
        let kept: String = sqlx::query_scalar(
            "INSERT INTO staged_nars (id, cache_id, file, file_size, uploaded_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (cache_id, file) DO UPDATE SET created_at = excluded.created_at
             RETURNING id",
        )
        .bind(id)
        .bind(cache_id)
        .bind(file)
        .bind(file_size)
        .bind(uploaded_by)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(if kept == id {
            Staged::New
        } else {
            Staged::Already(kept)
        })
    }

    /// The staged file `file` of a cache, claimed until `until` so GC
    /// leaves it while a narinfo is ingested from it.
    pub async fn claim_staged_nar(
        &self,
        cache_id: i64,
        file: &str,
        until: i64,
    ) -> DbResult<Option<StagedNar>> {
        let row = sqlx::query(
            "UPDATE staged_nars SET claimed_until = $1 WHERE cache_id = $2 AND file = $3
             RETURNING id, file_size",
        )
        .bind(until)
        .bind(cache_id)
        .bind(file)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StagedNar {
                id: r.try_get("id")?,
                file_size: r.try_get("file_size")?,
            })
        })
        .transpose()
    }

    pub async fn delete_staged_nar(&self, id: &str) -> DbResult<()> {
        sqlx::query("DELETE FROM staged_nars WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Staged files PUT before `before` that no ingest holds at `now`.
    pub async fn reclaimable_staged_nars(
        &self,
        before: i64,
        now: i64,
        limit: i64,
    ) -> DbResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM staged_nars WHERE created_at < $1
               AND (claimed_until IS NULL OR claimed_until < $2)
             ORDER BY created_at LIMIT $3",
        )
        .bind(before)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Of `ids`, those a staged row still names.
    pub async fn known_staged_nars(
        &self,
        ids: &[String],
    ) -> DbResult<std::collections::HashSet<String>> {
        let mut known = std::collections::HashSet::new();
        for batch in ids.chunks(super::BATCH) {
            let sql = format!(
                "SELECT id FROM staged_nars WHERE id IN ({})",
                super::placeholders(1, batch.len())
            );
            let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
            for id in batch {
                q = q.bind(id);
            }
            known.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(known)
    }
}
