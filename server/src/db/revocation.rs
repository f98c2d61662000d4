//! Revoking keys and upload records, and the feed of revoked paths. One
//! transaction marks the records (history is kept, marked) and removes every
//! path left with no unrevoked record, so every server process sharing the
//! database answers 404 for it from the commit on; no process caches it.

use provenix_provenance::revocation::{RevokeRequest, RevokedPath};
use sqlx::Row;

use super::ledger::{self, RevocableTable, RevokedPathRow};
use super::query::{identity_filters, Filter};
use super::{placeholders, Db, DbResult};

pub struct Revoked {
    pub revocation_id: Option<i64>,
    pub keys: Vec<String>,
    pub uploads: Vec<i64>,
    pub paths: Vec<RevokedPath>,
}

impl Db {
    /// Revokes what `req` selects within `cache_ids` (the caches the caller
    /// may revoke on). A dry run does all of it and rolls back.
    pub async fn revoke(
        &self,
        req: &RevokeRequest,
        cache_ids: &[i64],
        actor: &str,
    ) -> DbResult<Revoked> {
        let now = crate::clock::now();
        let mut tx = self.begin_write().await?;
        let selector = serde_json::to_string(req).expect("request serializes");
        let revocation_id =
            ledger::record_revocation(&mut tx, actor, &req.reason, &selector, now).await?;
        // The caches whose logs get this revocation: those it marked in.
        let mut touched = Vec::new();
        let caches = placeholders(1, cache_ids.len());

        let mut keys = Vec::new();
        if req.selects_keys() {
            let mut f = Filter::new();
            f.add_in("k.cache_id", cache_ids);
            f.add_unbound("k.revocation_id IS NULL");
            identity_filters(&mut f, &req.identity);
            f.add_window("k.created_at", req.issued_after, req.issued_before);
            let sql = format!(
                "SELECT k.id, k.key_id, k.cache_id FROM upload_keys k WHERE {} ORDER BY k.id",
                f.sql()
            );
            let rows = f.query(sql).fetch_all(&mut *tx).await?;
            let mut ids = Vec::with_capacity(rows.len());
            for r in &rows {
                ids.push(r.try_get::<i64, _>("id")?);
                keys.push(r.try_get::<String, _>("key_id")?);
                touched.push(r.try_get::<i64, _>("cache_id")?);
            }
            ledger::mark_revoked(&mut tx, RevocableTable::UploadKeys, revocation_id, &ids).await?;
        }

        let mut uploads = Vec::new();
        if let Some(upload) = req.upload {
            let sql = format!(
                "SELECT id, cache_id FROM uploads WHERE id = ${} AND revocation_id IS NULL
                 AND cache_id IN ({caches})",
                cache_ids.len() + 1,
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in cache_ids {
                q = q.bind(*id);
            }
            for r in q.bind(upload).fetch_all(&mut *tx).await? {
                uploads.push(r.try_get::<i64, _>("id")?);
                touched.push(r.try_get::<i64, _>("cache_id")?);
            }
            ledger::mark_revoked(&mut tx, RevocableTable::Uploads, revocation_id, &uploads).await?;
        }

        if keys.is_empty() && uploads.is_empty() {
            tx.rollback().await?;
            return Ok(Revoked {
                revocation_id: None,
                keys,
                uploads,
                paths: Vec::new(),
            });
        }

        // Paths this revocation touched that have no unrevoked record left.
        let valid_record = "SELECT 1 FROM uploads u JOIN upload_keys k ON u.upload_key_id = k.id
             WHERE u.cache_id = o.cache_id AND u.store_path_hash = o.store_path_hash
               AND u.nar_hash = n.nar_hash";
        // A closure statement's vouch counts as a record of the path as
        // stored (it was checked against it); it is revoked with its key.
        let vouch = "SELECT 1 FROM vouches v JOIN closure_statements s ON v.statement_id = s.id
             JOIN upload_keys k ON s.upload_key_id = k.id WHERE v.path_id = o.id";
        let sql = format!(
            "SELECT o.id, o.cache_id, o.store_path_hash, o.store_path, n.nar_hash, c.name AS cache_name
             FROM paths o JOIN nars n ON o.nar_id = n.id JOIN caches c ON o.cache_id = c.id
             WHERE o.cache_id IN ({caches})
               AND (EXISTS ({valid_record} AND (u.revocation_id = ${r} OR k.revocation_id = ${r}))
                    OR EXISTS ({vouch} AND k.revocation_id = ${r}))
               AND NOT EXISTS ({valid_record} AND u.revocation_id IS NULL AND k.revocation_id IS NULL)
               AND NOT EXISTS ({vouch} AND k.revocation_id IS NULL)
             ORDER BY o.id",
            r = cache_ids.len() + 1
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in cache_ids {
            q = q.bind(*id);
        }
        let rows = q.bind(revocation_id).fetch_all(&mut *tx).await?;
        let mut paths = Vec::with_capacity(rows.len());
        for r in &rows {
            let path_id: i64 = r.try_get("id")?;
            let cache_id: i64 = r.try_get("cache_id")?;
            let store_path: String = r.try_get("store_path")?;
            let store_path_hash: String = r.try_get("store_path_hash")?;
            let nar_hash: String = r.try_get("nar_hash")?;
            let revoked = RevokedPathRow {
                cache_id,
                store_path_hash: &store_path_hash,
                store_path: &store_path,
                nar_hash: &nar_hash,
            };
            let feed_id = ledger::record_revoked_path(&mut tx, revoked, revocation_id, now).await?;
            sqlx::query("DELETE FROM paths WHERE id = $1")
                .bind(path_id)
                .execute(&mut *tx)
                .await?;
            paths.push(RevokedPath {
                id: if req.dry_run { 0 } else { feed_id },
                cache: r.try_get("cache_name")?,
                store_path,
                nar_hash,
                revocation_id,
                revoked_at: now,
            });
        }
        if req.dry_run {
            tx.rollback().await?;
            return Ok(Revoked {
                revocation_id: None,
                keys,
                uploads,
                paths,
            });
        }
        ledger::finish_revocation(&mut tx, revocation_id, touched).await?;
        tx.commit().await?;
        Ok(Revoked {
            revocation_id: Some(revocation_id),
            keys,
            uploads,
            paths,
        })
    }

    /// The feed: paths revoked from a cache after `cursor` (a feed id) or at
    /// or after `since`, oldest first.
    pub async fn revoked_paths(
        &self,
        cache_id: i64,
        cursor: Option<i64>,
        since: Option<i64>,
        limit: i64,
    ) -> DbResult<Vec<RevokedPath>> {
        let rows = sqlx::query(
            "SELECT p.id, p.store_path, p.nar_hash, p.revocation_id, p.created_at, c.name AS cache_name
             FROM revoked_paths p JOIN caches c ON p.cache_id = c.id
             WHERE p.cache_id = $1 AND p.id > $2 AND p.created_at >= $3
             ORDER BY p.id LIMIT $4",
        )
        .bind(cache_id)
        .bind(cursor.unwrap_or(0))
        .bind(since.unwrap_or(0))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RevokedPath {
                    id: r.try_get("id")?,
                    cache: r.try_get("cache_name")?,
                    store_path: r.try_get("store_path")?,
                    nar_hash: r.try_get("nar_hash")?,
                    revocation_id: r.try_get("revocation_id")?,
                    revoked_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
