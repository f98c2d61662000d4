//! Pins (the `pins` table) and their history (`pin_changes`, written through
//! the ledger): setting, re-pinning and removing a named path, listing them,
//! and the roots GC keeps.

use provenix_policy::retention::revisions_to_drop;
use provenix_provenance::pin::{Pin, PinChange as PinChangeRow, PinRevision};
use sqlx::Row;

use super::ledger::{record_pin_change, PinChange};
use super::{Db, DbResult};

/// What pinning did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinOutcome {
    /// A new revision (or a new name).
    Pinned,
    /// The name's newest revision is this path and keeps as many: nothing
    /// changed and nothing was recorded.
    Unchanged,
}

pub struct NewPin<'a> {
    pub cache_id: i64,
    pub name: &'a str,
    pub store_path: &'a str,
    pub store_path_hash: &'a str,
    pub keep_revisions: i64,
    pub actor: &'a str,
}

impl Db {
    /// Pins `p.store_path` under `p.name`: a new revision unless it is the
    /// newest already; revisions beyond `keep_revisions` are dropped. The
    /// change is recorded in the same transaction.
    pub async fn pin(&self, p: &NewPin<'_>) -> DbResult<PinOutcome> {
        let mut tx = self.begin_write().await?;
        self.lock_pins(&mut tx, p.cache_id).await?;
        let rows = sqlx::query(
            "SELECT revision, store_path, keep_revisions FROM pins
             WHERE cache_id = $1 AND name = $2 ORDER BY revision DESC",
        )
        .bind(p.cache_id)
        .bind(p.name)
        .fetch_all(&mut *tx)
        .await?;
        let mut revisions: Vec<(i64, String)> = Vec::with_capacity(rows.len() + 1);
        for r in &rows {
            revisions.push((r.try_get("revision")?, r.try_get("store_path")?));
        }
        let newest = rows.first();
        let same_path = revisions.first().is_some_and(|(_, sp)| sp == p.store_path);
        let same_keep = newest
            .map(|r| r.try_get::<i64, _>("keep_revisions"))
            .transpose()?
            == Some(p.keep_revisions);
        if same_path && same_keep {
            return Ok(PinOutcome::Unchanged);
        }
        if !same_path {
            let revision = revisions.first().map_or(1, |(r, _)| r + 1);
            sqlx::query(
                "INSERT INTO pins (cache_id, name, revision, store_path, store_path_hash, keep_revisions, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(p.cache_id)
            .bind(p.name)
            .bind(revision)
            .bind(p.store_path)
            .bind(p.store_path_hash)
            .bind(p.keep_revisions)
            .bind(crate::clock::now())
            .execute(&mut *tx)
            .await?;
            revisions.insert(0, (revision, p.store_path.to_string()));
        }
        sqlx::query("UPDATE pins SET keep_revisions = $1 WHERE cache_id = $2 AND name = $3")
            .bind(p.keep_revisions)
            .bind(p.cache_id)
            .bind(p.name)
            .execute(&mut *tx)
            .await?;
        let numbers: Vec<i64> = revisions.iter().map(|(r, _)| *r).collect();
        let drop = revisions_to_drop(&numbers, p.keep_revisions);
        let mut dropped = Vec::new();
        for revision in &drop {
            sqlx::query("DELETE FROM pins WHERE cache_id = $1 AND name = $2 AND revision = $3")
                .bind(p.cache_id)
                .bind(p.name)
                .bind(revision)
                .execute(&mut *tx)
                .await?;
            if let Some((_, sp)) = revisions.iter().find(|(r, _)| r == revision) {
                dropped.push(sp.clone());
            }
        }
        record_pin_change(
            &mut tx,
            &PinChange {
                cache_id: p.cache_id,
                name: p.name,
                action: "pin",
                store_path: Some(p.store_path),
                keep_revisions: Some(p.keep_revisions),
                dropped: &dropped,
                actor: p.actor,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(PinOutcome::Pinned)
    }

    /// Pin changes of one cache take turns: on PostgreSQL by the cache's
    /// row lock, held to commit (two re-pins of a name read the same newest
    /// revision otherwise, found by the attack review); SQLite's write
    /// transactions take turns already.
    async fn lock_pins(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        cache_id: i64,
    ) -> DbResult<()> {
        self.lock_cache_row(tx, cache_id).await
    }

    /// Removes every revision of a pin; false if there is no such pin.
    pub async fn remove_pin(&self, cache_id: i64, name: &str, actor: &str) -> DbResult<bool> {
        let mut tx = self.begin_write().await?;
        self.lock_pins(&mut tx, cache_id).await?;
        let dropped: Vec<String> = sqlx::query_scalar(
            "SELECT store_path FROM pins WHERE cache_id = $1 AND name = $2 ORDER BY revision DESC",
        )
        .bind(cache_id)
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        if dropped.is_empty() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM pins WHERE cache_id = $1 AND name = $2")
            .bind(cache_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        record_pin_change(
            &mut tx,
            &PinChange {
                cache_id,
                name,
                action: "remove",
                store_path: None,
                keep_revisions: None,
                dropped: &dropped,
                actor,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A cache's pins, by name, each with its revisions newest first.
    pub async fn pins(&self, cache_id: i64) -> DbResult<Vec<Pin>> {
        self.pins_named(cache_id, None).await
    }

    /// One pin of a cache, if it has it.
    pub async fn pin_named(&self, cache_id: i64, name: &str) -> DbResult<Option<Pin>> {
        Ok(self.pins_named(cache_id, Some(name)).await?.pop())
    }

    /// The cache's pins, or its pin of `name`.
    async fn pins_named(&self, cache_id: i64, name: Option<&str>) -> DbResult<Vec<Pin>> {
        let filter = if name.is_some() {
            "AND p.name = $2"
        } else {
            ""
        };
        let sql = format!(
            "SELECT p.name, p.revision, p.store_path, p.keep_revisions, p.created_at,
                    CAST(CASE WHEN EXISTS (SELECT 1 FROM paths o WHERE o.cache_id = p.cache_id
                            AND o.store_path_hash = p.store_path_hash) THEN 1 ELSE 0 END AS BIGINT) AS held
             FROM pins p WHERE p.cache_id = $1 {filter} ORDER BY p.name, p.revision DESC"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(cache_id);
        if let Some(name) = name {
            q = q.bind(name);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut pins: Vec<Pin> = Vec::new();
        for r in &rows {
            let name: String = r.try_get("name")?;
            let revision = PinRevision {
                revision: r.try_get("revision")?,
                store_path: r.try_get("store_path")?,
                created_at: r.try_get("created_at")?,
                held: r.try_get::<i64, _>("held")? != 0,
            };
            match pins.last_mut() {
                Some(pin) if pin.name == name => pin.revisions.push(revision),
                _ => pins.push(Pin {
                    name,
                    keep_revisions: r.try_get("keep_revisions")?,
                    revisions: vec![revision],
                }),
            }
        }
        Ok(pins)
    }

    /// A cache's pin changes older than `before` (an id), newest first.
    pub async fn pin_changes(
        &self,
        cache_id: i64,
        before: i64,
        limit: i64,
    ) -> DbResult<Vec<PinChangeRow>> {
        let rows = sqlx::query(
            "SELECT id, name, action, store_path, keep_revisions, dropped, actor, created_at
             FROM pin_changes WHERE cache_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(cache_id)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let dropped: String = r.try_get("dropped")?;
                Ok(PinChangeRow {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    action: r.try_get("action")?,
                    store_path: r.try_get("store_path")?,
                    keep_revisions: r.try_get("keep_revisions")?,
                    dropped: serde_json::from_str(&dropped).unwrap_or_default(),
                    actor: r.try_get("actor")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The full store path `cache_id` holds under this hash part, if any.
    pub async fn held_store_path(&self, cache_id: i64, hash: &str) -> DbResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT store_path FROM paths WHERE cache_id = $1 AND store_path_hash = $2",
        )
        .bind(cache_id)
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A number that changes whenever a pin is added: GC compares it
    /// before each deletion to see pins made while it runs.
    pub async fn pins_version(&self) -> DbResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM pins")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Every pinned path of every cache: (cache id, store path hash).
    pub async fn pinned_roots(&self) -> DbResult<Vec<(i64, String)>> {
        let rows = sqlx::query("SELECT DISTINCT cache_id, store_path_hash FROM pins")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("cache_id")?, r.try_get("store_path_hash")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
