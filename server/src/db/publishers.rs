//! Trusted publishers: per cache, the CI identities whose tokens exchange
//! for upload keys (the policy itself is `provenix_policy::publisher`).

use provenix_policy::publisher::NixKeyPublisher;
use provenix_policy::Publisher;
use provenix_provenance::tlog::upload_check::NIX_KEY_KIND;
use sqlx::Row;

use super::ledger::{self, EntryKind};
use super::{Db, DbResult};

/// The `issuer` of a registered Nix key's upload key row: the identity is
/// the subject of this server's own access tokens.
pub const NIX_KEY_ISSUER: &str = "provenix";
/// A registered Nix key does not expire (9999-12-31T23:59:59Z): removing
/// its publisher stops its uploads, revoking it hides them.
pub const NIX_KEY_NOT_AFTER: i64 = 253_402_300_799;

#[derive(Debug, Clone)]
pub struct PublisherRow {
    pub id: i64,
    pub publisher: Publisher,
    pub created_by: String,
    pub created_at: i64,
}

impl Db {
    pub async fn add_publisher(
        &self,
        cache_id: i64,
        publisher: &Publisher,
        created_by: &str,
    ) -> DbResult<i64> {
        let spec = serde_json::to_string(publisher).expect("publisher serializes");
        Ok(sqlx::query_scalar(
            "INSERT INTO trusted_publishers (cache_id, spec, created_by, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(cache_id)
        .bind(spec)
        .bind(created_by)
        .bind(crate::clock::now())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Registers a Nix key for `nix copy --to` uploads: its publisher row
    /// and, in the same transaction, its upload key row (kind `nix-key`,
    /// appended to the cache's ledger, so the log shows the key before any
    /// upload it signs). A key registered again for the same subject and
    /// cache (after its removal) is the same upload key, linked anew; one
    /// registered for another subject or cache (or under another name) is
    /// refused with its key id.
    pub async fn add_nix_key(
        &self,
        cache_id: i64,
        publisher: &Publisher,
        key: &NixKeyPublisher,
        key_id: &str,
        created_by: &str,
    ) -> DbResult<Result<i64, String>> {
        let now = crate::clock::now();
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query(
            "SELECT id, key_id, public_key, cache_id, subject FROM upload_keys
             WHERE public_key = $1 OR key_id = $2",
        )
        .bind(&key.nix_key)
        .bind(key_id)
        .fetch_optional(&mut *tx)
        .await?;
        let spec = serde_json::to_string(publisher).expect("publisher serializes");
        let publisher_id: i64 = sqlx::query_scalar(
            "INSERT INTO trusted_publishers (cache_id, spec, created_by, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(cache_id)
        .bind(spec)
        .bind(created_by)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(r) = existing {
            let (row, existing_key_id): (i64, String) = (r.try_get("id")?, r.try_get("key_id")?);
            let same = r.try_get::<i64, _>("cache_id")? == cache_id
                && r.try_get::<String, _>("subject")? == key.subject
                && r.try_get::<String, _>("public_key")? == key.nix_key;
            if !same {
                return Ok(Err(existing_key_id));
            }
            sqlx::query("UPDATE upload_keys SET publisher_id = $1 WHERE id = $2")
                .bind(publisher_id)
                .bind(row)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(Ok(publisher_id));
        }
        let name = key.nix_key.split(':').next().unwrap_or_default();
        let claims = serde_json::json!({ "nix_key_name": name, "registered_by": created_by });
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO upload_keys (key_id, public_key, cache_id, kind, issuer, subject,
                 publisher_id, claims, certificate, not_before, not_after, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '', $9, $10, $11) RETURNING id",
        )
        .bind(key_id)
        .bind(&key.nix_key)
        .bind(cache_id)
        .bind(NIX_KEY_KIND)
        .bind(NIX_KEY_ISSUER)
        .bind(&key.subject)
        .bind(publisher_id)
        .bind(claims.to_string())
        .bind(now)
        .bind(NIX_KEY_NOT_AFTER)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        ledger::append(&mut tx, cache_id, EntryKind::UploadKey, id).await?;
        tx.commit().await?;
        Ok(Ok(publisher_id))
    }

    pub async fn publishers(&self, cache_id: i64) -> DbResult<Vec<PublisherRow>> {
        let rows = sqlx::query(
            "SELECT id, spec, created_by, created_at FROM trusted_publishers
             WHERE cache_id = $1 ORDER BY id",
        )
        .bind(cache_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let spec: String = r.try_get("spec")?;
                Ok(PublisherRow {
                    id: r.try_get("id")?,
                    publisher: serde_json::from_str(&spec)
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    created_by: r.try_get("created_by")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    pub async fn remove_publisher(&self, cache_id: i64, id: i64) -> DbResult<bool> {
        let done = sqlx::query("DELETE FROM trusted_publishers WHERE cache_id = $1 AND id = $2")
            .bind(cache_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
