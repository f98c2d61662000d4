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
    /// The key's entry in the cache's transparency log (its index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<i64>,
    /// Its c2sp.org/tlog-proof in the published checkpoint, the entry in
    /// its `extra` line (`provenix verify --offline`); set in a path's
    /// provenance once the entry is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlog_proof: Option<String>,
    /// The log index of the CA certificate entry that certified the key
    /// (its entry names it too, as `ca_index`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_log_index: Option<i64>,
    /// That entry's tlog-proof, as the key's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_tlog_proof: Option<String>,
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
    /// The record's entry in the cache's transparency log (its index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<i64>,
    /// Its c2sp.org/tlog-proof, as the key's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlog_proof: Option<String>,
}

impl UploadRecord {
    /// Revoked itself or through its key.
    pub fn is_revoked(&self) -> bool {
        self.revocation.is_some() || self.key.revocation.is_some()
    }
}

/// An accepted closure statement: one push vouching for the paths of its
/// closure the cache held (`crate::closure`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClosureRecord {
    pub id: i64,
    pub cache: String,
    /// How many paths the statement lists.
    pub paths: i64,
    pub at: i64,
    /// The exact text the key signed (every listed path, its NAR hash and
    /// size), and the signature (base64).
    pub statement: String,
    pub signature: String,
    /// Revoking the key revokes the statement.
    pub key: KeyRecord,
}

impl ClosureRecord {
    pub fn is_revoked(&self) -> bool {
        self.key.revocation.is_some()
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
    /// Closure statements that vouched for the path as the cache holds it
    /// now, newest first.
    #[serde(default)]
    pub closures: Vec<ClosureRecord>,
    /// More statements vouched for the path than one answer carries (a
    /// few MB of their text): `audit --closures` pages through them all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more_closures: bool,
}

/// Who a key was issued to, as auditors and admins name it: the one
/// selector shared by `provenix audit`, `provenix revoke`, their flags and
/// the database query. Every given field must match (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentitySelector {
    /// `OWNER/REPO`, or the numeric repository id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// A workflow file name (`build.yml`) or a full `workflow_ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// A short-term key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The issuer URL the identity's token came from (as records show it).
    /// Names and ids are only unique within one issuer: GitHub and a GitLab
    /// instance both have a repository 42.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

impl IdentitySelector {
    /// Whether any field is given.
    pub fn is_empty(&self) -> bool {
        *self == IdentitySelector::default()
    }

    /// Whether the selector names identities by something only unique
    /// within an issuer (repository, workflow, run, subject) without naming
    /// the issuer. Key ids are unique everywhere.
    pub fn needs_issuer(&self) -> bool {
        self.issuer.is_none()
            && (self.repository.is_some()
                || self.workflow.is_some()
                || self.run_id.is_some()
                || self.subject.is_some())
    }

    /// A repository given as digits names the repository id (renames
    /// cannot move it); otherwise the `OWNER/REPO` name.
    pub fn repository_is_id(&self) -> bool {
        self.repository
            .as_deref()
            .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
    }

    /// A workflow with `@` is a full `workflow_ref`; otherwise a file name.
    pub fn workflow_is_ref(&self) -> bool {
        self.workflow.as_deref().is_some_and(|w| w.contains('@'))
    }
}

/// Filters of `provenix audit` (query string of the audit endpoints).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditQuery {
    #[serde(flatten)]
    pub identity: IdentitySelector,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selector_is_flat_on_the_wire() {
        let q = AuditQuery {
            identity: IdentitySelector {
                repository: Some("42".into()),
                workflow: Some("build.yml".into()),
                ..Default::default()
            },
            since: Some(5),
            ..Default::default()
        };
        let json = serde_json::to_value(&q).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"repository": "42", "workflow": "build.yml", "since": 5})
        );
        let back: AuditQuery = serde_json::from_value(json).unwrap();
        assert_eq!(back.identity, q.identity);
        assert!(back.identity.repository_is_id());
        assert!(!back.identity.workflow_is_ref());
    }
}
