//! Upload keys: the short-term keys the CA certifies (each recorded with the
//! identity it was issued to, and appended to its cache's ledger), the CA's
//! own key, and the OIDC token ids spent on exchanges.

use sqlx::Row;

use super::ledger::{self, EntryKind};
use super::{Db, DbResult};

pub struct NewUploadKey<'a> {
    pub key_id: &'a str,
    pub public_key: &'a str,
    pub cache_id: i64,
    pub kind: &'a str,
    pub issuer: &'a str,
    pub subject: &'a str,
    pub publisher_id: Option<i64>,
    pub claims: &'a serde_json::Map<String, serde_json::Value>,
    pub certificate: &'a str,
    /// The certificate of the CA that issued `certificate` (PEM).
    pub ca_certificate: &'a str,
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
pub enum UploadKeyRecorded {
    Recorded,
    TokenReused,
    KeyReused,
}

#[derive(Debug, Clone)]
pub struct UploadKeyRow {
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
    pub async fn certificate_authority(&self) -> DbResult<Option<(String, String)>> {
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
    ) -> DbResult<()> {
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

    /// Spends the token (if any) and records the key, in one transaction:
    /// a replayed token or a reused public key leaves nothing behind.
    pub async fn record_upload_key(
        &self,
        key: &NewUploadKey<'_>,
        token: Option<SpentToken<'_>>,
    ) -> DbResult<UploadKeyRecorded> {
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
                return Ok(UploadKeyRecorded::TokenReused);
            }
        }
        let claim = |name: &str| provenix_policy::publisher::claim_text(key.claims, name);
        // GitHub's names, else GitLab's: the audit and revocation
        // selectors (--repository, --workflow, --run-id) read these.
        let either = |a: &str, b: &str| claim(a).or_else(|| claim(b));
        let workflow_ref = either("workflow_ref", "ci_config_ref_uri");
        let workflow = match claim("workflow_ref") {
            Some(r) => provenix_policy::publisher::workflow_file(&r),
            None => claim("ci_config_ref_uri").and_then(|u| {
                provenix_policy::publisher::gitlab_ci_config(&u).map(|(_, file)| file.to_string())
            }),
        };
        let ca_index =
            ledger::log_ca_certificate(&mut tx, key.cache_id, key.ca_certificate).await?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO upload_keys (key_id, public_key, cache_id, kind, issuer, subject,
                 publisher_id, claims, repository, repository_id, workflow, workflow_ref, run_id,
                 certificate, not_before, not_after, created_at, ca_index)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
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
        .bind(either("repository", "project_path"))
        .bind(either("repository_id", "project_id"))
        .bind(workflow)
        .bind(workflow_ref)
        .bind(either("run_id", "pipeline_id"))
        .bind(key.certificate)
        .bind(key.not_before)
        .bind(key.not_after)
        .bind(crate::clock::now())
        .bind(ca_index)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(UploadKeyRecorded::KeyReused);
        };
        ledger::append(&mut tx, key.cache_id, EntryKind::UploadKey, id).await?;
        tx.commit().await?;
        Ok(UploadKeyRecorded::Recorded)
    }

    pub async fn upload_key_by_id(&self, key_id: &str) -> DbResult<Option<UploadKeyRow>> {
        let row = sqlx::query(
            "SELECT id, key_id, public_key, cache_id, kind, issuer, subject, not_before, not_after,
                    revocation_id FROM upload_keys WHERE key_id = $1",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_row).transpose()
    }

    /// The registered Nix keys (`nix copy --to`) of `subject` in a cache,
    /// while their publisher rows stand.
    pub async fn nix_keys_for(&self, cache_id: i64, subject: &str) -> DbResult<Vec<UploadKeyRow>> {
        let rows = sqlx::query(
            "SELECT k.id, k.key_id, k.public_key, k.cache_id, k.kind, k.issuer, k.subject,
                    k.not_before, k.not_after, k.revocation_id
             FROM upload_keys k JOIN trusted_publishers p ON p.id = k.publisher_id
             WHERE k.cache_id = $1 AND k.kind = $2 AND k.subject = $3 ORDER BY k.id",
        )
        .bind(cache_id)
        .bind(provenix_provenance::tlog::upload_check::NIX_KEY_KIND)
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_row).collect()
    }

    /// Whether the statement with `nonce`, signed by the key with row id
    /// `upload_key_row`, was recorded before (asked before a NAR is read;
    /// the commit's own insert is what guarantees single use).
    pub async fn statement_spent(&self, upload_key_row: i64, nonce: &str) -> DbResult<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM spent_statements WHERE upload_key_id = $1 AND nonce = $2",
        )
        .bind(upload_key_row)
        .bind(nonce)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// Forgets nonces of statements whose keys can sign nothing accepted any
    /// more: a replay of one is refused as expired.
    pub async fn purge_spent_statements(&self, before: i64) -> DbResult<u64> {
        let done = sqlx::query("DELETE FROM spent_statements WHERE remember_until < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Forgets token ids whose tokens have expired (past the leeway): they
    /// can no longer be presented anyway.
    pub async fn purge_used_tokens(&self, before: i64) -> DbResult<u64> {
        let done = sqlx::query("DELETE FROM used_tokens WHERE expires_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

fn key_row(r: &sqlx::any::AnyRow) -> DbResult<UploadKeyRow> {
    Ok(UploadKeyRow {
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
}
