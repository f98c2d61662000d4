//! What auditors read: provenance records, keys issued and divergences, as
//! the API returns them (JSON) and the CLI prints them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A short-term key as issued, with the identity it was certified for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyRecord {
    pub key_id: String,
    pub cache: String,
    /// `oidc` or `token`.
    pub kind: String,
    pub issuer: String,
    pub subject: String,
    /// Identity claims (repository and id, owner and id, workflow_ref,
    /// job_workflow_ref, sha, ref, event, environment, run id and attempt,
    /// runner environment, actor, ...).
    pub claims: Map<String, Value>,
    /// PEM.
    pub certificate: String,
    pub not_before: i64,
    pub not_after: i64,
    /// `valid`, `expired` or `revoked`, at the time of the answer.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<RevocationInfo>,
}

/// When, by whom and why a key or record was revoked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RevocationInfo {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub reason: String,
}

/// One accepted upload statement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UploadRecord {
    pub id: i64,
    pub cache: String,
    pub store_path: String,
    pub nar_hash: String,
    pub nar_size: i64,
    /// `uploaded`, `deduplicated` (the server held the NAR) or `exists`
    /// (the cache had the path: another witness).
    pub outcome: String,
    pub uploaded_at: i64,
    /// The exact text the key signed, and the signature (base64).
    pub statement: String,
    pub signature: String,
    pub key: KeyRecord,
    /// This record's own revocation (`key.revocation` covers its key's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<RevocationInfo>,
}

impl UploadRecord {
    /// Revoked itself or through its key.
    pub fn is_revoked(&self) -> bool {
        self.revocation.is_some() || self.key.revocation.is_some()
    }
}

/// A refused upload of a path the cache holds with another NAR hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DivergenceRecord {
    pub id: i64,
    pub cache: String,
    pub store_path: String,
    /// What the cache serves.
    pub existing_nar_hash: String,
    /// What this statement claimed.
    pub nar_hash: String,
    pub nar_size: i64,
    pub at: i64,
    pub statement: String,
    pub signature: String,
    /// Who claimed the other NAR.
    pub key: KeyRecord,
    /// Who uploaded what the cache serves.
    pub existing: Vec<UploadRecord>,
}

/// A page of answers; pass `next_cursor` as `cursor` for the next one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<i64>,
}

/// `GET /_api/v1/cache/{cache}/provenance/{hash}`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    pub store_path: Option<String>,
    /// Oldest first.
    pub uploads: Vec<UploadRecord>,
    pub divergences: Vec<DivergenceRecord>,
}

/// Filters of `provenix audit` (query string of the audit endpoints).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditQuery {
    /// `OWNER/REPO`, or the numeric repository id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// A workflow file name (`build.yml`) or a full `workflow_ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Unix seconds, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<i64>,
}

pub const DEFAULT_PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 1000;
