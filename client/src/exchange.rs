//! Getting and keeping a short-term signing key: a fresh ed25519 key made in
//! memory (never written anywhere), certified by the server in exchange for
//! the CI job's OIDC token or the user's access token, renewed before it
//! expires during a long push.

use anyhow::{bail, Context, Result};
use base64::Engine;
use ed25519_dalek::SigningKey;
use provenix_provenance::exchange::{
    access_token_id, encode_public_key, proof_message, sign, ExchangeRequest, ExchangeResponse,
};
use std::sync::Arc;
use tokio::sync::Mutex;

use crate::api::ApiClient;
use crate::config::ServerConfig;

pub const ENV_REQUEST_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
pub const ENV_REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

/// What the client exchanges for a key.
#[derive(Clone)]
pub enum Credential {
    /// An access token given to `provenix login`.
    AccessToken(String),
    /// Inside GitHub Actions, with `permissions: id-token: write`.
    GithubActions {
        request_url: String,
        request_token: String,
    },
    /// An OIDC ID token the CI put in the environment (GitLab's
    /// `id_tokens:`): exchanged once, as its `jti` allows.
    IdToken(String),
}

/// The environment variable that holds a CI job's ID token (GitLab CI's
/// `id_tokens:` names it), unless `PROVENIX_ID_TOKEN_VAR` names another.
pub const DEFAULT_ID_TOKEN_VAR: &str = "PROVENIX_ID_TOKEN";

/// The job's ID token from the environment, if the CI gave one.
fn id_token_from_env() -> Option<String> {
    let var =
        std::env::var("PROVENIX_ID_TOKEN_VAR").unwrap_or_else(|_| DEFAULT_ID_TOKEN_VAR.into());
    std::env::var(var)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

impl Credential {
    /// Inside GitHub Actions the job's own identity signs: every CI upload
    /// then carries its provenance, even when a token was saved for reading
    /// a private cache. Elsewhere the saved token is exchanged.
    pub fn for_server(server: &ServerConfig) -> Result<Credential> {
        if let (Ok(request_url), Ok(request_token)) = (
            std::env::var(ENV_REQUEST_URL),
            std::env::var(ENV_REQUEST_TOKEN),
        ) {
            return Ok(Credential::GithubActions {
                request_url,
                request_token,
            });
        }
        if let Some(token) = id_token_from_env() {
            return Ok(Credential::IdToken(token));
        }
        match &server.token {
            Some(t) => Ok(Credential::AccessToken(t.clone())),
            None => bail!(
                "no token for {}, not inside GitHub Actions ({ENV_REQUEST_URL} is unset; the job needs `permissions: id-token: write`) and no CI ID token in {DEFAULT_ID_TOKEN_VAR}: run `provenix login NAME URL TOKEN`",
                server.endpoint
            ),
        }
    }

    pub fn is_oidc(&self) -> bool {
        matches!(
            self,
            Credential::GithubActions { .. } | Credential::IdToken(_)
        )
    }
}

/// A certified key and what came with it.
pub struct Session {
    pub key: SigningKey,
    pub answer: ExchangeResponse,
}

impl Session {
    pub fn key_id(&self) -> &str {
        &self.answer.key_id
    }
}

/// Renew when less than a third of the lifetime (at most two minutes) is
/// left: an upload started just before expiry must still be accepted.
pub fn needs_renewal(now: i64, not_before: i64, not_after: i64) -> bool {
    let margin = ((not_after - not_before) / 3).min(120);
    now + margin >= not_after
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The server's name for the issuer of this Actions job's tokens:
/// `PROVENIX_OIDC_ISSUER` if set; where `GITHUB_SERVER_URL` is not
/// github.com, the issuer at `{GITHUB_SERVER_URL}/_services/token` (GitHub
/// Enterprise Server) or `{GITHUB_SERVER_URL}/api/actions` (Forgejo, whose
/// runners speak the same token protocol); else `github`.
pub fn actions_issuer(
    issuers: &[provenix_provenance::exchange::IssuerInfo],
    named: Option<&str>,
    server_url: Option<&str>,
) -> String {
    if let Some(name) = named.filter(|n| !n.is_empty()) {
        return name.to_string();
    }
    let enterprise = server_url
        .map(|u| u.trim_end_matches('/'))
        .filter(|u| !u.is_empty() && *u != "https://github.com");
    if let Some(base) = enterprise {
        for token_issuer in [
            format!("{base}/_services/token"),
            format!("{base}/api/actions"),
        ] {
            if let Some(i) = issuers
                .iter()
                .find(|i| i.issuer.trim_end_matches('/') == token_issuer)
            {
                return i.name.clone();
            }
        }
    }
    provenix_policy::publisher::DEFAULT_GITHUB_ISSUER.to_string()
}

/// The `jti` of a JWT we were handed (to bind the proof to it; the server
/// verifies the token itself).
fn token_jti(jwt: &str) -> Result<String> {
    token_claim(jwt, "jti")
}

/// A string claim of a JWT we were handed, unverified (the server verifies).
fn token_claim(jwt: &str, name: &str) -> Result<String> {
    let payload = jwt
        .split('.')
        .nth(1)
        .context("the OIDC token is not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .context("the OIDC token is not a JWT")?;
    let claims: serde_json::Value =
        serde_json::from_slice(&bytes).context("the OIDC token is not a JWT")?;
    let value = match &claims[name] {
        serde_json::Value::Array(a) => a.first().cloned().unwrap_or_default(),
        v => v.clone(),
    };
    value
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("the OIDC token has no {name}"))
}

pub async fn exchange(api: &ApiClient, credential: &Credential, cache: &str) -> Result<Session> {
    let audience = api.audience().await?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let public_key = encode_public_key(&key.verifying_key());
    let (bearer, oidc_token, proof) = match credential {
        Credential::AccessToken(token) => {
            let msg = proof_message(
                &audience.audience,
                &access_token_id(token),
                cache,
                &public_key,
            );
            (Some(token.clone()), None, sign(&key, &msg))
        }
        Credential::GithubActions {
            request_url,
            request_token,
        } => {
            // The audience of the issuer the job's tokens are checked against.
            let github = actions_issuer(
                &audience.issuers,
                std::env::var("PROVENIX_OIDC_ISSUER").ok().as_deref(),
                std::env::var("GITHUB_SERVER_URL").ok().as_deref(),
            );
            let github = github.as_str();
            let aud = audience
                .issuers
                .iter()
                .find(|i| i.name == github)
                .with_context(|| format!("the server accepts no tokens from issuer {github:?}"))?
                .audience
                .clone()
                .with_context(|| {
                    format!("the server has no OIDC audience for issuer {github:?}; its admin sets [oidc] audience in server.toml")
                })?;
            let jwt = api
                .github_oidc_token(request_url, request_token, &aud)
                .await?;
            let msg = proof_message(&aud, &token_jti(&jwt)?, cache, &public_key);
            (None, Some(jwt), sign(&key, &msg))
        }
        Credential::IdToken(jwt) => {
            // Bound to the token's own audience: the server checks it is
            // the one it expects from that issuer.
            let aud = token_claim(jwt, "aud")?;
            let msg = proof_message(&aud, &token_jti(jwt)?, cache, &public_key);
            (None, Some(jwt.clone()), sign(&key, &msg))
        }
    };
    let answer = api
        .with_token(bearer)
        .exchange(&ExchangeRequest {
            cache: cache.to_string(),
            public_key,
            oidc_token,
            proof,
        })
        .await
        .context("exchanging for a signing key")?;
    Ok(Session { key, answer })
}

/// Hands out a valid session to concurrent uploads, renewing it once when
/// it nears expiry (or the server says it expired).
pub struct Signer {
    api: ApiClient,
    credential: Credential,
    cache: String,
    current: Mutex<Arc<Session>>,
}

impl Signer {
    pub async fn start(api: &ApiClient, credential: Credential, cache: &str) -> Result<Signer> {
        let session = exchange(api, &credential, cache).await?;
        Ok(Signer {
            api: api.clone(),
            credential,
            cache: cache.to_string(),
            current: Mutex::new(Arc::new(session)),
        })
    }

    pub async fn session(&self) -> Result<Arc<Session>> {
        let mut current = self.current.lock().await;
        let a = &current.answer;
        if needs_renewal(now(), a.not_before, a.not_after) {
            *current = Arc::new(exchange(&self.api, &self.credential, &self.cache).await?);
        }
        Ok(current.clone())
    }

    /// Replaces `stale` (refused by the server) unless another upload
    /// already did.
    pub async fn renew(&self, stale: &Session) -> Result<Arc<Session>> {
        let mut current = self.current.lock().await;
        if current.key_id() == stale.key_id() {
            *current = Arc::new(exchange(&self.api, &self.credential, &self.cache).await?);
        }
        Ok(current.clone())
    }

    /// The API client for calls around uploads: in CI the session's token
    /// (it expires with the key), otherwise the user's own.
    pub fn api_for(&self, session: &Session) -> ApiClient {
        if self.credential.is_oidc() {
            self.api
                .with_token(Some(session.answer.access_token.clone()))
        } else {
            self.api.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_before_expiry() {
        // A 15-minute key: renewed in its last two minutes.
        assert!(!needs_renewal(1000, 1000, 1900));
        assert!(!needs_renewal(1779, 1000, 1900));
        assert!(needs_renewal(1780, 1000, 1900));
        assert!(needs_renewal(2000, 1000, 1900));
        // A 6-second key (tests): renewed in its last two seconds.
        assert!(!needs_renewal(103, 100, 106));
        assert!(needs_renewal(104, 100, 106));
    }

    #[test]
    fn reads_the_jti() {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!("{}.{}.sig", b("{}"), b(r#"{"jti":"abc"}"#));
        assert_eq!(token_jti(&jwt).unwrap(), "abc");
        assert!(token_jti("nope").is_err());
    }
}

#[cfg(test)]
mod issuer_tests {
    use super::*;
    use provenix_provenance::exchange::IssuerInfo;

    #[test]
    fn an_actions_job_finds_its_issuer() {
        let issuers = vec![
            IssuerInfo {
                name: "github".into(),
                issuer: "https://token.actions.githubusercontent.com".into(),
                audience: Some("a".into()),
            },
            IssuerInfo {
                name: "ghes-corp".into(),
                issuer: "https://git.corp.example/_services/token".into(),
                audience: Some("a".into()),
            },
            IssuerInfo {
                name: "codeberg".into(),
                issuer: "https://codeberg.org/api/actions".into(),
                audience: Some("a".into()),
            },
        ];
        assert_eq!(
            actions_issuer(&issuers, None, Some("https://codeberg.org")),
            "codeberg",
            "a Forgejo runner"
        );
        assert_eq!(
            actions_issuer(&issuers, None, Some("https://github.com")),
            "github"
        );
        assert_eq!(actions_issuer(&issuers, None, None), "github");
        assert_eq!(
            actions_issuer(&issuers, None, Some("https://git.corp.example/")),
            "ghes-corp"
        );
        assert_eq!(
            actions_issuer(&issuers, Some("forgejo"), Some("https://git.corp.example")),
            "forgejo",
            "named outright"
        );
        assert_eq!(
            actions_issuer(&issuers, None, Some("https://unknown.example")),
            "github"
        );
    }
}
