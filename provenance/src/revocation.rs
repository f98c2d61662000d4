//! Revocation requests and answers, and the feed of revoked store paths.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::audit::IdentitySelector;

/// `POST /_api/v1/revoke`. Keys matching every given filter are revoked
/// (and/or one upload record); `cache` narrows to one cache, otherwise every
/// cache the caller may revoke on is searched.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RevokeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    #[serde(flatten)]
    pub identity: IdentitySelector,
    /// Keys issued at or after this Unix time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_after: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_before: Option<i64>,
    /// One upload record, by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<i64>,
    pub reason: String,
    #[serde(default)]
    pub dry_run: bool,
    /// Fields no version of the API defines. serde cannot deny unknown
    /// fields beside a flattened one, so they are caught here and refused
    /// by `problem`: a misspelt selector must not widen a revocation.
    #[serde(flatten, default, skip_serializing)]
    pub unknown_fields: BTreeMap<String, serde_json::Value>,
}

impl RevokeRequest {
    /// Whether any key filter is given (`cache` alone selects all its keys).
    pub fn selects_keys(&self) -> bool {
        !self.identity.is_empty()
            || self.issued_after.is_some()
            || self.issued_before.is_some()
            || (self.cache.is_some() && self.upload.is_none())
    }

    /// A one-line problem with the request, if any.
    pub fn problem(&self) -> Option<String> {
        if let Some(field) = self.unknown_fields.keys().next() {
            return Some(format!("unknown field {field:?} in the revocation request"));
        }
        if self.reason.trim().is_empty() {
            return Some("a revocation needs a --reason".into());
        }
        if self.reason.len() > 2000 {
            return Some("the reason is longer than 2000 characters".into());
        }
        // It is logged and shown to monitors and auditors on their
        // terminals: no escape sequences, no carriage returns.
        if self.reason.chars().any(|c| c.is_control() && c != '\n') {
            return Some("the reason holds control characters".into());
        }
        let id = &self.identity;
        let fields = [
            ("cache", self.cache.as_deref()),
            ("repository", id.repository.as_deref()),
            ("workflow", id.workflow.as_deref()),
            ("run_id", id.run_id.as_deref()),
            ("key", id.key.as_deref()),
            ("subject", id.subject.as_deref()),
            ("issuer", id.issuer.as_deref()),
        ];
        // A selector is recorded (and logged) as given: bound it, as no
        // identity, key id or cache name is anywhere near this long.
        if let Some((name, _)) = fields
            .iter()
            .find(|(_, v)| v.is_some_and(|v| v.len() > 500))
        {
            return Some(format!("{name} is longer than 500 characters"));
        }
        if !self.selects_keys() && self.upload.is_none() {
            return Some("name what to revoke: --key, --repository, --workflow, --run-id, --subject, --issued-after/--issued-before, --cache or --upload".into());
        }
        None
    }
}

/// A path a revocation removed from a cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RevokedPath {
    /// Position in the feed (0 in a dry run).
    pub id: i64,
    pub cache: String,
    pub store_path: String,
    pub nar_hash: String,
    pub revocation_id: i64,
    pub revoked_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeResponse {
    pub dry_run: bool,
    /// None when nothing matched (or in a dry run).
    pub revocation_id: Option<i64>,
    pub keys: Vec<String>,
    pub uploads: Vec<i64>,
    /// Paths that answer 404 from now on (would, in a dry run).
    pub paths: Vec<RevokedPath>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_bounded() {
        let mut r = RevokeRequest {
            reason: "x".into(),
            ..Default::default()
        };
        r.identity.key = Some("k".repeat(501));
        assert!(r.problem().unwrap().contains("key is longer than 500"));
        r.identity.key = Some("k".repeat(500));
        assert_eq!(r.problem(), None);
    }

    #[test]
    fn requests_need_a_reason_and_a_selector() {
        let mut r = RevokeRequest {
            identity: IdentitySelector {
                key: Some("k".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(r.problem().unwrap().contains("reason"));
        r.reason = "leaked".into();
        assert_eq!(r.problem(), None);
        let bare = RevokeRequest {
            reason: "x".into(),
            ..Default::default()
        };
        assert!(bare.problem().unwrap().contains("name what to revoke"));
        let upload_only = RevokeRequest {
            upload: Some(3),
            cache: Some("main".into()),
            reason: "x".into(),
            ..Default::default()
        };
        assert!(!upload_only.selects_keys());
        assert_eq!(upload_only.problem(), None);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: RevokeRequest =
            serde_json::from_str(r#"{"cache":"main","repo":"octo/x","reason":"r"}"#).unwrap();
        assert!(r.problem().unwrap().contains("\"repo\""));
        let ok: RevokeRequest =
            serde_json::from_str(r#"{"repository":"octo/x","reason":"r"}"#).unwrap();
        assert_eq!(ok.problem(), None);
        assert_eq!(ok.identity.repository.as_deref(), Some("octo/x"));
        assert!(ok.unknown_fields.is_empty());
        let json = serde_json::to_value(&ok).unwrap();
        assert_eq!(json["repository"], "octo/x");
    }
}
