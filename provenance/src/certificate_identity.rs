//! What a short-term key's certificate says about its holder: the URI SAN
//! naming the build signer and Sigstore Fulcio's extensions
//! 1.3.6.1.4.1.57264.1.8 to .24, filled from verified claims exactly as
//! Fulcio fills them, so Sigstore-aware tooling reads our certificates.

use serde_json::{Map, Value};

/// `1.3.6.1.4.1.57264.1`: Fulcio's arc; extension `n` is this plus `n`.
pub const FULCIO_ARC: [u64; 8] = [1, 3, 6, 1, 4, 1, 57264, 1];

pub mod oid {
    pub const ISSUER_V2: u64 = 8;
    pub const BUILD_SIGNER_URI: u64 = 9;
    pub const BUILD_SIGNER_DIGEST: u64 = 10;
    pub const RUNNER_ENVIRONMENT: u64 = 11;
    pub const SOURCE_REPOSITORY_URI: u64 = 12;
    pub const SOURCE_REPOSITORY_DIGEST: u64 = 13;
    pub const SOURCE_REPOSITORY_REF: u64 = 14;
    pub const SOURCE_REPOSITORY_IDENTIFIER: u64 = 15;
    pub const SOURCE_REPOSITORY_OWNER_URI: u64 = 16;
    pub const SOURCE_REPOSITORY_OWNER_IDENTIFIER: u64 = 17;
    pub const BUILD_CONFIG_URI: u64 = 18;
    pub const BUILD_CONFIG_DIGEST: u64 = 19;
    pub const BUILD_TRIGGER: u64 = 20;
    pub const RUN_INVOCATION_URI: u64 = 21;
    pub const SOURCE_REPOSITORY_VISIBILITY: u64 = 22;
    pub const DEPLOYMENT_ENVIRONMENT: u64 = 23;
    pub const TOKEN_SUBJECT: u64 = 24;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateIdentity {
    /// The URI SAN (ASCII: anything else is percent-encoded).
    pub san_uri: String,
    /// (last OID component, UTF-8 value), in OID order, empty values left out.
    pub extensions: Vec<(u64, String)>,
}

fn text(claims: &Map<String, Value>, name: &str) -> String {
    match claims.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Percent-encodes what may not appear in a URI (IA5String SANs are ASCII).
pub fn uri_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && !b"%\"<>\\^`{|}".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn collect(pairs: Vec<(u64, String)>) -> Vec<(u64, String)> {
    pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

/// GitHub Actions: `server_url` is `https://github.com` (or a GHES host).
pub fn github(issuer: &str, server_url: &str, claims: &Map<String, Value>) -> CertificateIdentity {
    let server = server_url.trim_end_matches('/');
    let c = |n: &str| text(claims, n);
    let url = |path: String| {
        if path.is_empty() {
            String::new()
        } else {
            format!("{server}/{path}")
        }
    };
    let repository = c("repository");
    let run_uri = if repository.is_empty() || c("run_id").is_empty() {
        String::new()
    } else {
        format!(
            "{server}/{repository}/actions/runs/{}/attempts/{}",
            c("run_id"),
            c("run_attempt")
        )
    };
    let signer = url(c("job_workflow_ref"));
    CertificateIdentity {
        san_uri: uri_escape(&signer),
        extensions: collect(vec![
            (oid::ISSUER_V2, issuer.to_string()),
            (oid::BUILD_SIGNER_URI, signer),
            (oid::BUILD_SIGNER_DIGEST, c("job_workflow_sha")),
            (oid::RUNNER_ENVIRONMENT, c("runner_environment")),
            (oid::SOURCE_REPOSITORY_URI, url(repository.clone())),
            (oid::SOURCE_REPOSITORY_DIGEST, c("sha")),
            (oid::SOURCE_REPOSITORY_REF, c("ref")),
            (oid::SOURCE_REPOSITORY_IDENTIFIER, c("repository_id")),
            (oid::SOURCE_REPOSITORY_OWNER_URI, url(c("repository_owner"))),
            (
                oid::SOURCE_REPOSITORY_OWNER_IDENTIFIER,
                c("repository_owner_id"),
            ),
            (oid::BUILD_CONFIG_URI, url(c("workflow_ref"))),
            (oid::BUILD_CONFIG_DIGEST, c("workflow_sha")),
            (oid::BUILD_TRIGGER, c("event_name")),
            (oid::RUN_INVOCATION_URI, run_uri),
            (
                oid::SOURCE_REPOSITORY_VISIBILITY,
                c("repository_visibility"),
            ),
            (oid::DEPLOYMENT_ENVIRONMENT, c("environment")),
            (oid::TOKEN_SUBJECT, c("sub")),
        ]),
    }
}

/// GitLab CI, as Fulcio maps it: the host is the issuer's (gitlab.com or
/// a self-managed instance), the signer the pipeline's CI config file.
pub fn gitlab(issuer: &str, claims: &Map<String, Value>) -> CertificateIdentity {
    let c = |n: &str| text(claims, n);
    let host = issuer.trim_end_matches('/');
    let url = |path: String| {
        if path.is_empty() {
            String::new()
        } else {
            format!("{host}/{path}")
        }
    };
    // ci_config_ref_uri is HOST/PROJECT//FILE@REF: its URL is https://...
    let config = c("ci_config_ref_uri");
    let config_url = if config.is_empty() {
        String::new()
    } else {
        format!("https://{config}")
    };
    let source_ref = match (c("ref_type").as_str(), c("ref")) {
        ("branch", r) if !r.is_empty() => format!("refs/heads/{r}"),
        ("tag", r) if !r.is_empty() => format!("refs/tags/{r}"),
        (_, r) => r,
    };
    let job_uri = if c("job_id").is_empty() {
        String::new()
    } else {
        url(format!("{}/-/jobs/{}", c("project_path"), c("job_id")))
    };
    CertificateIdentity {
        san_uri: uri_escape(&config_url),
        extensions: collect(vec![
            (oid::ISSUER_V2, issuer.to_string()),
            (oid::BUILD_SIGNER_URI, config_url.clone()),
            (oid::BUILD_SIGNER_DIGEST, c("ci_config_sha")),
            (oid::RUNNER_ENVIRONMENT, c("runner_environment")),
            (oid::SOURCE_REPOSITORY_URI, url(c("project_path"))),
            (oid::SOURCE_REPOSITORY_DIGEST, c("sha")),
            (oid::SOURCE_REPOSITORY_REF, source_ref),
            (oid::SOURCE_REPOSITORY_IDENTIFIER, c("project_id")),
            (oid::SOURCE_REPOSITORY_OWNER_URI, url(c("namespace_path"))),
            (oid::SOURCE_REPOSITORY_OWNER_IDENTIFIER, c("namespace_id")),
            (oid::BUILD_CONFIG_URI, config_url),
            (oid::BUILD_CONFIG_DIGEST, c("ci_config_sha")),
            (oid::BUILD_TRIGGER, c("pipeline_source")),
            (oid::RUN_INVOCATION_URI, job_uri),
            (oid::SOURCE_REPOSITORY_VISIBILITY, c("project_visibility")),
            (oid::DEPLOYMENT_ENVIRONMENT, c("environment")),
            (oid::TOKEN_SUBJECT, c("sub")),
        ]),
    }
}

/// Any other issuer, and this server's own access tokens: the identity is
/// the issuer and the subject.
pub fn subject(issuer: &str, subject: &str) -> CertificateIdentity {
    CertificateIdentity {
        san_uri: format!("{}#sub={}", uri_escape(issuer), uri_escape(subject)),
        extensions: collect(vec![
            (oid::ISSUER_V2, issuer.to_string()),
            (oid::TOKEN_SUBJECT, subject.to_string()),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn github_claims_fill_fulcios_extensions() {
        let claims = json!({
            "sub": "repo:octo-org/octo-repo:ref:refs/heads/main",
            "repository": "octo-org/octo-repo", "repository_id": "42",
            "repository_owner": "octo-org", "repository_owner_id": "7",
            "workflow_ref": "octo-org/octo-repo/.github/workflows/build.yml@refs/heads/main",
            "workflow_sha": "aaa", "job_workflow_sha": "bbb",
            "job_workflow_ref": "octo-org/octo-repo/.github/workflows/build.yml@refs/heads/main",
            "sha": "ccc", "ref": "refs/heads/main", "event_name": "push",
            "run_id": "1536140711", "run_attempt": "2", "runner_environment": "github-hosted",
            "repository_visibility": "public",
        });
        let id = github(
            "https://token.actions.githubusercontent.com",
            "https://github.com",
            claims.as_object().unwrap(),
        );
        assert_eq!(
            id.san_uri,
            "https://github.com/octo-org/octo-repo/.github/workflows/build.yml@refs/heads/main"
        );
        let get = |n| {
            id.extensions
                .iter()
                .find(|(o, _)| *o == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get(oid::ISSUER_V2),
            Some("https://token.actions.githubusercontent.com")
        );
        assert_eq!(
            get(oid::SOURCE_REPOSITORY_URI),
            Some("https://github.com/octo-org/octo-repo")
        );
        assert_eq!(get(oid::SOURCE_REPOSITORY_IDENTIFIER), Some("42"));
        assert_eq!(
            get(oid::RUN_INVOCATION_URI),
            Some("https://github.com/octo-org/octo-repo/actions/runs/1536140711/attempts/2")
        );
        assert_eq!(
            get(oid::SOURCE_REPOSITORY_OWNER_URI),
            Some("https://github.com/octo-org")
        );
        // No environment claim: the extension is left out, not empty.
        assert_eq!(get(oid::DEPLOYMENT_ENVIRONMENT), None);
        assert_eq!(id.extensions.len(), 16);
    }

    #[test]
    fn subjects_are_escaped_into_the_san() {
        let id = subject("https://cache.example/", "alice smith/ü");
        assert_eq!(
            id.san_uri,
            "https://cache.example/#sub=alice%20smith/%C3%BC"
        );
        assert!(id.san_uri.is_ascii());
        assert_eq!(
            id.extensions[1],
            (oid::TOKEN_SUBJECT, "alice smith/ü".into())
        );
    }
}
