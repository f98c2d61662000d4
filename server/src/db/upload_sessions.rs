//! Upload sessions: uploads sent in parts (`push/parts.rs`). The rows say
//! which parts are stored; the parts themselves are objects under
//! `uploads/<id>/` in the storage, written before their row.

use sqlx::Row;
use std::collections::HashSet;

use super::{placeholders, Db, DbResult, BATCH};

pub struct UploadSessionRow {
    pub id: String,
    pub cache_id: i64,
    /// The signed statement (UploadPathNarInfo JSON) as received.
    pub info: String,
    pub key_id: String,
    /// `key_id:nonce`: one session per statement.
    pub statement_key: String,
    pub nar_size: i64,
    pub part_size: i64,
    pub expires_at: i64,
    /// Set once completed.
    pub outcome: Option<String>,
}

impl Db {
    /// Opens the session; false if its statement opened one already.
    pub async fn open_upload_session(&self, s: &UploadSessionRow) -> DbResult<bool> {
        let done = sqlx::query(
            "INSERT INTO upload_sessions (id, cache_id, info, key_id, statement_key, nar_size, part_size, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (statement_key) DO NOTHING",
        )
        .bind(&s.id)
        .bind(s.cache_id)
        .bind(&s.info)
        .bind(&s.key_id)
        .bind(&s.statement_key)
        .bind(s.nar_size)
        .bind(s.part_size)
        .bind(s.expires_at)
        .bind(crate::clock::now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sessions of `key_id` not completed yet.
    pub async fn open_upload_sessions_of(&self, key_id: &str) -> DbResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM upload_sessions WHERE key_id = $1 AND outcome IS NULL",
        )
        .bind(key_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// How many of the session's parts are stored (each was checked for
    /// its exact size before its row was written).
    pub async fn upload_parts_stored(&self, id: &str) -> DbResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM upload_session_parts WHERE session_id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Claims the session's completion until `until`: false if it is
    /// completed or another claim has not run out.
    pub async fn claim_upload_completion(&self, id: &str, now: i64, until: i64) -> DbResult<bool> {
        let done = sqlx::query(
            "UPDATE upload_sessions SET completing_until = $1
             WHERE id = $2 AND outcome IS NULL AND (completing_until IS NULL OR completing_until < $3)",
        )
        .bind(until)
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a completion claim up (the completion failed and may be tried again).
    pub async fn release_upload_completion(&self, id: &str) -> DbResult<()> {
        sqlx::query("UPDATE upload_sessions SET completing_until = NULL WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn upload_session(&self, id: &str) -> DbResult<Option<UploadSessionRow>> {
        let row = sqlx::query(
            "SELECT id, cache_id, info, key_id, statement_key, nar_size, part_size, expires_at, outcome
             FROM upload_sessions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(UploadSessionRow {
            id: r.try_get("id")?,
            cache_id: r.try_get("cache_id")?,
            info: r.try_get("info")?,
            key_id: r.try_get("key_id")?,
            statement_key: r.try_get("statement_key")?,
            nar_size: r.try_get("nar_size")?,
            part_size: r.try_get("part_size")?,
            expires_at: r.try_get("expires_at")?,
            outcome: r.try_get("outcome")?,
        }))
    }

    /// The parts stored, ascending, with their sizes.
    pub async fn upload_session_parts(&self, id: &str) -> DbResult<Vec<(i64, i64)>> {
        let rows = sqlx::query(
            "SELECT part, size FROM upload_session_parts WHERE session_id = $1 ORDER BY part",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("part")?, r.try_get("size")?)))
            .collect()
    }

    /// Records that part `part` is stored; false when the session is gone
    /// or completed meanwhile (the part's object is then garbage).
    pub async fn record_upload_part(&self, id: &str, part: i64, size: i64) -> DbResult<bool> {
        let mut tx = self.begin_write().await?;
        let open: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM upload_sessions WHERE id = $1 AND outcome IS NULL")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if open.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO upload_session_parts (session_id, part, size) VALUES ($1, $2, $3)
             ON CONFLICT (session_id, part) DO UPDATE SET size = excluded.size",
        )
        .bind(id)
        .bind(part)
        .bind(size)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Marks the session completed with `outcome` and forgets its parts
    /// (whose objects the caller deletes): a repeated completion answers
    /// the same until the session expires.
    pub async fn finish_upload_session(&self, id: &str, outcome: &str) -> DbResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE upload_sessions SET outcome = $1 WHERE id = $2")
            .bind(outcome)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM upload_session_parts WHERE session_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_upload_session(&self, id: &str) -> DbResult<()> {
        let mut tx = self.begin_write().await?;
        for sql in [
            "DELETE FROM upload_session_parts WHERE session_id = $1",
            "DELETE FROM upload_sessions WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sessions that can no longer complete (expired before `now`), at
    /// most `limit` of them.
    pub async fn expired_upload_sessions(&self, now: i64, limit: i64) -> DbResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM upload_sessions WHERE expires_at < $1 ORDER BY expires_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Of `ids`, the sessions that exist.
    pub async fn known_upload_sessions(&self, ids: &[String]) -> DbResult<HashSet<String>> {
        let mut known = HashSet::new();
        for batch in ids.chunks(BATCH) {
            let sql = format!(
                "SELECT id FROM upload_sessions WHERE id IN ({})",
                placeholders(1, batch.len())
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
