//! Revoking keys and upload records, and the feed of revoked paths. One
//! transaction marks the records (history is kept, marked) and removes every
//! path left with no unrevoked record, so every server process sharing the
//! database answers 404 for it from the commit on; no process caches it.

use provenix_provenance::revocation::{RevokeRequest, RevokedPath};
use sqlx::Row;

use super::ledger::{self, RevocableTable};
use super::query::{identity_filters, Filter};
use super::{placeholders, Db, DbResult, BATCH};

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
        let mut key_rows = Vec::new();
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
            for r in &rows {
                key_rows.push(r.try_get::<i64, _>("id")?);
                keys.push(r.try_get::<String, _>("key_id")?);
                touched.push(r.try_get::<i64, _>("cache_id")?);
            }
            ledger::mark_revoked(
                &mut tx,
                RevocableTable::UploadKeys,
                revocation_id,
                &key_rows,
            )
            .await?;
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

        // The paths this revocation touched, found from the records it
        // marked (not by a pass over every path of the cache: at a million
        // paths that alone took seconds); then those with no unrevoked
        // record left are removed, a batch at a time.
        let candidates = touched_paths(&mut tx, cache_ids, &key_rows, &uploads).await?;
        let mut paths = Vec::new();
        for batch in candidates.chunks(BATCH) {
            for removed in remove_unheld(&mut tx, batch, revocation_id, now).await? {
                paths.push(RevokedPath {
                    id: if req.dry_run { 0 } else { removed.id },
                    ..removed
                });
            }
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

/// Ids of the paths (in `cache_ids`) that the revoked keys' uploads and
/// closure statements, or the revoked upload records, are records of as
/// they are stored now; sorted, each once.
async fn touched_paths(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    cache_ids: &[i64],
    key_rows: &[i64],
    upload_ids: &[i64],
) -> DbResult<Vec<i64>> {
    let mut found = std::collections::BTreeSet::new();
    let caches = placeholders(1, cache_ids.len());
    let from = cache_ids.len() + 1;
    let queries = [
        (
            key_rows,
            "SELECT o.id FROM uploads u JOIN paths o
                 ON o.cache_id = u.cache_id AND o.store_path_hash = u.store_path_hash
             JOIN nars n ON o.nar_id = n.id AND n.nar_hash = u.nar_hash
             WHERE o.cache_id IN ({caches}) AND u.upload_key_id IN ({ids})",
        ),
        (
            upload_ids,
            "SELECT o.id FROM uploads u JOIN paths o
                 ON o.cache_id = u.cache_id AND o.store_path_hash = u.store_path_hash
             JOIN nars n ON o.nar_id = n.id AND n.nar_hash = u.nar_hash
             WHERE o.cache_id IN ({caches}) AND u.id IN ({ids})",
        ),
        (
            key_rows,
            "SELECT o.id FROM closure_statements s JOIN vouches v ON v.statement_id = s.id
             JOIN paths o ON o.id = v.path_id
             WHERE o.cache_id IN ({caches}) AND s.upload_key_id IN ({ids})",
        ),
    ];
    for (ids, template) in queries {
        for batch in ids.chunks(BATCH) {
            let sql = template
                .replace("{caches}", &caches)
                .replace("{ids}", &placeholders(from, batch.len()));
            let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
            for id in cache_ids.iter().chain(batch) {
                q = q.bind(*id);
            }
            found.extend(q.fetch_all(&mut **tx).await?);
        }
    }
    Ok(found.into_iter().collect())
}

/// Of `path_ids`, removes those no unrevoked record holds (an upload of
/// the NAR stored, or a closure statement's vouch) and writes each to the
/// revoked-paths feed; returns them.
async fn remove_unheld(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    path_ids: &[i64],
    revocation_id: i64,
    now: i64,
) -> DbResult<Vec<RevokedPath>> {
    let sql = format!(
        "SELECT o.id, o.cache_id, o.store_path_hash, o.store_path, n.nar_hash, c.name AS cache_name
         FROM paths o JOIN nars n ON o.nar_id = n.id JOIN caches c ON o.cache_id = c.id
         WHERE o.id IN ({})
           AND NOT EXISTS (SELECT 1 FROM uploads u JOIN upload_keys k ON u.upload_key_id = k.id
                 WHERE u.cache_id = o.cache_id AND u.store_path_hash = o.store_path_hash
                   AND u.nar_hash = n.nar_hash AND u.revocation_id IS NULL AND k.revocation_id IS NULL)
           AND NOT EXISTS (SELECT 1 FROM vouches v JOIN closure_statements s ON v.statement_id = s.id
                 JOIN upload_keys k ON s.upload_key_id = k.id
                 WHERE v.path_id = o.id AND k.revocation_id IS NULL)
         ORDER BY o.id",
        placeholders(1, path_ids.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in path_ids {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(&mut **tx).await?;
    let ids = rows
        .iter()
        .map(|r| r.try_get::<i64, _>("id"))
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let feed_ids = ledger::record_revoked_paths(tx, &ids, revocation_id, now).await?;
    let mut removed = Vec::with_capacity(rows.len());
    for r in &rows {
        let key = (
            r.try_get::<i64, _>("cache_id")?,
            r.try_get::<String, _>("store_path_hash")?,
        );
        removed.push(RevokedPath {
            id: feed_ids.get(&key).copied().unwrap_or_default(),
            cache: r.try_get("cache_name")?,
            store_path: r.try_get("store_path")?,
            nar_hash: r.try_get("nar_hash")?,
            revocation_id,
            revoked_at: now,
        });
    }
    let sql = format!(
        "DELETE FROM paths WHERE id IN ({})",
        placeholders(1, ids.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in &ids {
        q = q.bind(*id);
    }
    q.execute(&mut **tx).await?;
    Ok(removed)
}
