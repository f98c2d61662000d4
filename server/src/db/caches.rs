//! Caches and their signing keys.

use provenix_provenance::SecretKey;
use sqlx::{Any, Row, Transaction};

use super::{Db, DbResult};

#[derive(Debug, Clone)]
pub struct CacheRow {
    pub id: i64,
    pub name: String,
    pub is_public: bool,
    pub priority: i64,
    pub store_dir: String,
    pub upstream_cache_key_names: Vec<String>,
    /// Seconds; None follows the server default.
    pub retention_period: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct CacheKeyRow {
    pub id: i64,
    pub secret: String,
    pub public_key: String,
    pub created_at: i64,
    pub retire_at: Option<i64>,
}

const CACHE_COLUMNS: &str =
    "id, name, is_public, priority, store_dir, upstream_cache_key_names, retention_period";

pub(super) fn cache_from_row(r: &sqlx::any::AnyRow) -> Result<CacheRow, sqlx::Error> {
    let upstream: String = r.try_get("upstream_cache_key_names")?;
    Ok(CacheRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        is_public: r.try_get::<i64, _>("is_public")? != 0,
        priority: r.try_get("priority")?,
        store_dir: r.try_get("store_dir")?,
        upstream_cache_key_names: serde_json::from_str(&upstream).unwrap_or_default(),
        retention_period: r.try_get("retention_period")?,
    })
}

/// What a narinfo or NAR request needs, read in one query: the cache, the
/// version of its signing keys, and the path if the cache holds it.
pub struct PathLookup {
    pub cache: CacheRow,
    /// The newest key's id: every key change (rotation, regeneration) adds
    /// a key, so parsed keys cached under this version are never stale.
    pub keys_version: i64,
    pub path: Option<super::paths::PathRow>,
}

/// `$1`: the cache name, `$2`: the store path hash.
pub(super) const PATH_LOOKUP_SQL: &str =
    "SELECT c.id, c.name, c.is_public, c.priority, c.store_dir, c.upstream_cache_key_names, c.retention_period,
            (SELECT MAX(k.id) FROM cache_keys k WHERE k.cache_id = c.id) AS keys_version,
            o.id AS path_id, o.store_path, o.nar_id, o.refs, o.deriver, o.ca, o.last_accessed_at,
            n.nar_hash, n.nar_size, n.compression, n.file_size
     FROM caches c
     LEFT JOIN paths o ON o.cache_id = c.id AND o.store_path_hash = $2
     LEFT JOIN nars n ON n.id = o.nar_id
     WHERE c.name = $1";

/// The settings a configure request changes; None leaves one as it is.
#[derive(Debug, Default)]
pub struct CacheChange {
    pub is_public: Option<bool>,
    pub priority: Option<i64>,
    pub store_dir: Option<String>,
    pub upstream_cache_key_names: Option<Vec<String>>,
    pub retention_period: Option<i64>,
    pub reset_retention_period: bool,
    pub max_stored_size: Option<i64>,
    pub reset_max_stored_size: bool,
}

pub struct NewCache<'a> {
    pub name: &'a str,
    pub is_public: bool,
    pub priority: i64,
    pub store_dir: &'a str,
    pub upstream_cache_key_names: &'a [String],
    pub retention_period: Option<i64>,
    pub max_stored_size: Option<i64>,
    pub key: &'a SecretKey,
    /// The origin line of the cache's transparency log, fixed now.
    pub log_origin: &'a str,
}

impl Db {
    /// Every cache, (id, name): to find those a token may act on.
    pub async fn all_caches(&self) -> DbResult<Vec<CacheRow>> {
        let sql = format!("SELECT {CACHE_COLUMNS} FROM caches ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(cache_from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// One round trip for the hottest requests a cache serves (narinfo,
    /// NAR): a join, not three queries, because each query costs a hop to
    /// SQLite's worker thread or a network round trip to PostgreSQL.
    pub async fn path_lookup(
        &self,
        cache_name: &str,
        store_path_hash: &str,
    ) -> anyhow::Result<Option<PathLookup>> {
        if let Some(reader) = &self.sqlite_reader {
            return reader.path_lookup(cache_name, store_path_hash);
        }
        let row = sqlx::query(PATH_LOOKUP_SQL)
            .bind(cache_name)
            .bind(store_path_hash)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let path_id: Option<i64> = r.try_get("path_id")?;
        let path = match path_id {
            Some(_) => Some(super::paths::path_from_row(&r, "path_id")?),
            None => None,
        };
        Ok(Some(PathLookup {
            cache: cache_from_row(&r)?,
            keys_version: r.try_get::<Option<i64>, _>("keys_version")?.unwrap_or(0),
            path,
        }))
    }

    pub async fn cache_by_name(&self, name: &str) -> DbResult<Option<CacheRow>> {
        let sql = format!("SELECT {CACHE_COLUMNS} FROM caches WHERE name = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(cache_from_row).transpose()?)
    }

    /// The cache's row as read less than a second ago (see
    /// `recent_caches`), or read now: for reads whose answers may be kept
    /// that long anyway.
    pub async fn recent_cache_by_name(&self, name: &str) -> DbResult<Option<CacheRow>> {
        let now = std::time::Instant::now();
        if let Some(row) = self.recent_caches.get(name, now) {
            return Ok(row);
        }
        let row = self.cache_by_name(name).await?;
        self.recent_caches.insert(name, now, row.clone());
        Ok(row)
    }

    /// Creates the cache, its first Nix key and its first log key in one
    /// transaction; None if the name is taken.
    pub async fn create_cache(&self, c: NewCache<'_>) -> DbResult<Option<CacheRow>> {
        let now = crate::clock::now();
        let mut tx = self.begin_write().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO caches (name, is_public, priority, store_dir, upstream_cache_key_names, retention_period, max_stored_size, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(c.name)
        .bind(c.is_public as i64)
        .bind(c.priority)
        .bind(c.store_dir)
        .bind(serde_json::to_string(c.upstream_cache_key_names).unwrap_or_else(|_| "[]".into()))
        .bind(c.retention_period)
        .bind(c.max_stored_size)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else { return Ok(None) };
        insert_key(&mut tx, id, c.key, now).await?;
        super::log::current_log_key(&mut tx, id, c.log_origin, now).await?;
        tx.commit().await?;
        self.recent_caches.forget();
        self.cache_by_name(c.name).await
    }

    /// Changes only the settings `change` names, in one statement: two
    /// requests changing different settings at once both take effect (a
    /// read-modify-write of the whole row let one undo the other, found by
    /// the attack review).
    pub async fn update_cache(&self, cache_id: i64, change: &CacheChange) -> DbResult<()> {
        sqlx::query(
            "UPDATE caches SET
                is_public = COALESCE($1, is_public),
                priority = COALESCE($2, priority),
                store_dir = COALESCE($3, store_dir),
                upstream_cache_key_names = COALESCE($4, upstream_cache_key_names),
                retention_period = CASE WHEN $5 = 1 THEN NULL ELSE COALESCE($6, retention_period) END,
                max_stored_size = CASE WHEN $7 = 1 THEN NULL ELSE COALESCE($8, max_stored_size) END
             WHERE id = $9",
        )
        .bind(change.is_public.map(|v| v as i64))
        .bind(change.priority)
        .bind(change.store_dir.as_deref())
        .bind(
            change
                .upstream_cache_key_names
                .as_ref()
                .map(|u| serde_json::to_string(u).unwrap_or_else(|_| "[]".into())),
        )
        .bind(change.reset_retention_period as i64)
        .bind(change.retention_period)
        .bind(change.reset_max_stored_size as i64)
        .bind(change.max_stored_size)
        .bind(cache_id)
        .execute(&self.pool)
        .await?;
        self.recent_caches.forget();
        Ok(())
    }

    /// The cache's own maximum stored size (read by GC and `cache info`
    /// only, so not part of every cache lookup).
    pub async fn max_stored_size(&self, cache_id: i64) -> DbResult<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT max_stored_size FROM caches WHERE id = $1")
                .bind(cache_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Deletes the cache, its keys, its paths and their provenance (NARs and
    /// chunks are left to GC, which reaps what no cache references).
    pub async fn destroy_cache(&self, id: i64) -> DbResult<()> {
        let mut tx = self.begin_write().await?;
        // Children before parents: records name keys, keys name the cache.
        for table in [
            "paths",
            "cache_keys",
            "uploads",
            "divergences",
            // Their vouches go with them (ON DELETE CASCADE).
            "closure_statements",
            "revoked_paths",
            "pins",
            "pin_changes",
            "trusted_publishers",
            "upload_keys",
            "logged_cas",
            "ledger",
            "ledger_heads",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE cache_id = $1"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM caches WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.recent_caches.forget();
        Ok(())
    }

    /// Keys that sign at `now`: not retired, or retired in the future (overlap).
    pub async fn cache_keys(&self, cache_id: i64, now: i64) -> DbResult<Vec<CacheKeyRow>> {
        let rows = sqlx::query(
            "SELECT id, secret, public_key, created_at, retire_at FROM cache_keys
             WHERE cache_id = $1 AND (retire_at IS NULL OR retire_at > $2) ORDER BY id DESC",
        )
        .bind(cache_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CacheKeyRow {
                    id: r.try_get("id")?,
                    secret: r.try_get("secret")?,
                    public_key: r.try_get("public_key")?,
                    created_at: r.try_get("created_at")?,
                    retire_at: r.try_get("retire_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Adds `key` as the cache's current key; keys signing now stop at
    /// `now + overlap` (zero: at once).
    /// Starts signing with `key`, the live keys signing beside it for
    /// `overlap`; refused (nothing changed) when that would make too many
    /// live keys or two of one name. Checked under the cache's row lock,
    /// so concurrent rotations cannot together pass the limit (found by
    /// the attack review: 10 at once left 6 live keys, 4 of one name).
    pub async fn rotate_key(
        &self,
        cache_id: i64,
        key: &SecretKey,
        overlap: i64,
    ) -> DbResult<Result<(), provenix_policy::limits::OutOfRange>> {
        let now = crate::clock::now();
        let mut tx = self.begin_write().await?;
        self.lock_cache_row(&mut tx, cache_id).await?;
        let live: Vec<String> = sqlx::query_scalar(
            "SELECT public_key FROM cache_keys WHERE cache_id = $1 AND (retire_at IS NULL OR retire_at > $2)",
        )
        .bind(cache_id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        if let Err(e) = provenix_policy::limits::check_live_keys(live.len(), overlap) {
            return Ok(Err(e));
        }
        let same_name = live.iter().any(|k| {
            provenix_provenance::PublicKey::parse(k).is_ok_and(|k| k.name() == key.name())
        });
        if overlap > 0 && same_name {
            return Ok(Err(provenix_policy::limits::OutOfRange {
                code: provenix_provenance::ErrorCode::DuplicateKeyName,
                message: format!(
                    "a signing key named {:?} is still live; give the new key another name",
                    key.name()
                ),
            }));
        }
        sqlx::query(
            "UPDATE cache_keys SET retire_at = $1 WHERE cache_id = $2 AND (retire_at IS NULL OR retire_at > $3)",
        )
        .bind(now + overlap)
        .bind(cache_id)
        .bind(now + overlap)
        .execute(&mut *tx)
        .await?;
        insert_key(&mut tx, cache_id, key, now).await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Takes the cache's row lock for the rest of `tx` on PostgreSQL, so
    /// checks made in it hold until commit; SQLite's write transactions
    /// take turns already.
    pub(super) async fn lock_cache_row(
        &self,
        tx: &mut Transaction<'_, Any>,
        cache_id: i64,
    ) -> DbResult<()> {
        if self.backend() == super::Backend::Postgres {
            sqlx::query("SELECT id FROM caches WHERE id = $1 FOR UPDATE")
                .bind(cache_id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    pub async fn key_count(&self, cache_id: i64) -> DbResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM cache_keys WHERE cache_id = $1")
                .bind(cache_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

async fn insert_key(
    tx: &mut Transaction<'_, Any>,
    cache_id: i64,
    key: &SecretKey,
    now: i64,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO cache_keys (cache_id, name, secret, public_key, created_at, retire_at)
         VALUES ($1, $2, $3, $4, $5, NULL)",
    )
    .bind(cache_id)
    .bind(key.name())
    .bind(key.to_nix_string())
    .bind(key.public().to_nix_string())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
