//! The identity exchange's records: the CA, trusted publishers, short-term
//! keys and used OIDC token ids.

use provenix_policy::Publisher;
use sqlx::Row;

use super::Db;

#[derive(Debug, Clone)]
pub struct PublisherRow {
    pub id: i64,
    pub publisher: Publisher,
    pub created_by: String,
    pub created_at: i64,
}

pub struct NewKey<'a> {
    pub key_id: &'a str,
    pub public_key: &'a str,
    pub cache_id: i64,
    pub kind: &'a str,
    pub issuer: &'a str,
    pub subject: &'a str,
    pub publisher_id: Option<i64>,
    pub claims: &'a serde_json::Map<String, serde_json::Value>,
    pub certificate: &'a str,
    pub not_before: i64,
    pub not_after: i64,
}

/// An OIDC token being spent: (issuer URL, jti, exp).
pub struct SpentToken<'a> {
    pub issuer: &'a str,
    pub jti: &'a str,
    pub expires_at: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum KeyRecorded {
    Recorded,
    TokenReused,
    KeyReused,
}

#[derive(Debug, Clone)]
pub struct KeyRow {
    pub id: i64,
    pub key_id: String,
    pub public_key: String,
    pub cache_id: i64,
    pub kind: String,
    pub issuer: String,
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    pub revoked: bool,
}

impl Db {
    pub async fn certificate_authority(&self) -> Result<Option<(String, String)>, sqlx::Error> {
        let row = sqlx::query("SELECT key_pem, cert_pem FROM certificate_authority WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("key_pem")?, r.try_get("cert_pem")?)))
            .transpose()
    }

    pub async fn insert_certificate_authority(
        &self,
        key_pem: &str,
        cert_pem: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO certificate_authority (id, key_pem, cert_pem, created_at)
             VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(key_pem)
        .bind(cert_pem)
        .bind(crate::clock::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn add_publisher(
        &self,
        cache_id: i64,
        publisher: &Publisher,
        created_by: &str,
    ) -> Result<i64, sqlx::Error> {
        let spec = serde_json::to_string(publisher).expect("publisher serializes");
        sqlx::query_scalar(
            "INSERT INTO trusted_publishers (cache_id, spec, created_by, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(cache_id)
        .bind(spec)
        .bind(created_by)
        .bind(crate::clock::now())
        .fetch_one(&self.pool)
        .await
    }

    pub async fn publishers(&self, cache_id: i64) -> Result<Vec<PublisherRow>, sqlx::Error> {
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
            .collect()
    }

    pub async fn remove_publisher(&self, cache_id: i64, id: i64) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM trusted_publishers WHERE cache_id = $1 AND id = $2")
            .bind(cache_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Spends the token (if any) and records the key, in one transaction:
    /// a replayed token or a reused public key leaves nothing behind.
    pub async fn record_key(
        &self,
        key: &NewKey<'_>,
        token: Option<SpentToken<'_>>,
    ) -> Result<KeyRecorded, sqlx::Error> {
        let mut tx = self.begin_write().await?;
        if let Some(t) = token {
            let spent: Option<String> = sqlx::query_scalar(
                "INSERT INTO used_tokens (issuer, jti, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (issuer, jti) DO NOTHING RETURNING jti",
            )
            .bind(t.issuer)
            .bind(t.jti)
            .bind(t.expires_at)
            .fetch_optional(&mut *tx)
            .await?;
            if spent.is_none() {
                return Ok(KeyRecorded::TokenReused);
            }
        }
        let claim = |name: &str| provenix_policy::publisher::claim_text(key.claims, name);
        let workflow_ref = claim("workflow_ref");
        let workflow = workflow_ref
            .as_deref()
            .and_then(provenix_policy::publisher::workflow_file);
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO signing_keys (key_id, public_key, cache_id, kind, issuer, subject,
                 publisher_id, claims, repository, repository_id, workflow, workflow_ref, run_id,
                 certificate, not_before, not_after, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(key.key_id)
        .bind(key.public_key)
        .bind(key.cache_id)
        .bind(key.kind)
        .bind(key.issuer)
        .bind(key.subject)
        .bind(key.publisher_id)
        .bind(serde_json::to_string(key.claims).expect("claims serialize"))
        .bind(claim("repository"))
        .bind(claim("repository_id"))
        .bind(workflow)
        .bind(workflow_ref)
        .bind(claim("run_id"))
        .bind(key.certificate)
        .bind(key.not_before)
        .bind(key.not_after)
        .bind(crate::clock::now())
        .fetch_optional(&mut *tx)
        .await?;
        if id.is_none() {
            return Ok(KeyRecorded::KeyReused);
        }
        tx.commit().await?;
        Ok(KeyRecorded::Recorded)
    }

    pub async fn key_by_id(&self, key_id: &str) -> Result<Option<KeyRow>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT id, key_id, public_key, cache_id, kind, issuer, subject, not_before, not_after,
                    revocation_id FROM signing_keys WHERE key_id = $1",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(KeyRow {
                id: r.try_get("id")?,
                key_id: r.try_get("key_id")?,
                public_key: r.try_get("public_key")?,
                cache_id: r.try_get("cache_id")?,
                kind: r.try_get("kind")?,
                issuer: r.try_get("issuer")?,
                subject: r.try_get("subject")?,
                not_before: r.try_get("not_before")?,
                not_after: r.try_get("not_after")?,
                revoked: r.try_get::<Option<i64>, _>("revocation_id")?.is_some(),
            })
        })
        .transpose()
    }

    /// Forgets token ids whose tokens have expired (past the leeway): they
    /// can no longer be presented anyway.
    pub async fn purge_used_tokens(&self, before: i64) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM used_tokens WHERE expires_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
