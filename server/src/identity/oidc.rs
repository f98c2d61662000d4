//! Verifying CI jobs' OIDC tokens: discovery and JWKS fetched per issuer and
//! cached, refetched when a token names an unknown `kid` (key rotation).
//!
//! openidconnect cannot be used here: its discovery requires an
//! `authorization_endpoint` that GitHub Actions' metadata lacks, and its ID
//! token verifier never checks `nbf` (see shared/NOTES-crates.md). The JWT
//! itself is checked by jsonwebtoken against keys we fetch.

use anyhow::{bail, Context, Result};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use provenix_provenance::jwt::{self, UnverifiedJwt};
use provenix_provenance::ErrorCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use crate::config::IssuerConfig;
use crate::error::ApiError;

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 60;
/// Discovery documents and JWKS larger than this are refused.
const MAX_DOCUMENT_LEN: usize = 1 << 20;
/// After a refetch that still lacked the token's `kid`, unknown kids do not
/// refetch again for this long: random kids cannot make us hammer the issuer.
const UNKNOWN_KID_BACKOFF: Duration = Duration::from_secs(30);

/// A token that passed every check of the issuer (not yet the publisher's).
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub issuer_name: String,
    pub issuer_url: String,
    pub server_url: String,
    pub audience: String,
    pub subject: String,
    pub jti: String,
    pub exp: i64,
    pub claims: Map<String, Value>,
}

struct JwksCache {
    keys: Option<JwkSet>,
    fetched_at: Option<Instant>,
    unknown_kid_backoff_until: Option<Instant>,
    /// After a failed fetch, no other until then: every exchange refused
    /// at once instead of each refetching from an issuer that is down.
    failure_backoff_until: Option<(Instant, String)>,
}

pub struct Issuer {
    pub config: IssuerConfig,
    /// `None`: no audience names this server alone, so its tokens are
    /// refused (see [`audience_unset`]).
    pub audience: Option<String>,
    http: reqwest::Client,
    jwks: Mutex<JwksCache>,
}

pub struct OidcVerifier {
    pub issuers: Vec<Issuer>,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl Issuer {
    fn new(config: &IssuerConfig, default_audience: Option<&str>) -> Result<Issuer> {
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true);
        if let Some(path) = &config.ca_cert {
            let pem = std::fs::read(path).with_context(|| {
                format!(
                    "[[oidc.issuers]] {}: cannot read ca-cert {}",
                    config.name,
                    path.display()
                )
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).with_context(|| {
                format!(
                    "[[oidc.issuers]] {}: ca-cert {} is not a PEM certificate",
                    config.name,
                    path.display()
                )
            })?;
            http = http.add_root_certificate(cert);
        }
        Ok(Issuer {
            audience: config
                .audience
                .clone()
                .or_else(|| default_audience.map(str::to_string)),
            config: config.clone(),
            http: http.build()?,
            jwks: Mutex::new(JwksCache {
                keys: None,
                fetched_at: None,
                unknown_kid_backoff_until: None,
                failure_backoff_until: None,
            }),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T> {
        let mut resp = self
            .http
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?
            .error_for_status()
            .with_context(|| format!("GET {url}"))?;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_LEN {
                bail!("{url} answered more than {MAX_DOCUMENT_LEN} bytes");
            }
        }
        serde_json::from_slice(&body).with_context(|| format!("{url} is not the JSON expected"))
    }

    async fn fetch_jwks(&self) -> Result<JwkSet> {
        let base = self.config.issuer.trim_end_matches('/');
        let discovery: Discovery = self
            .get_json(&format!("{base}/.well-known/openid-configuration"))
            .await?;
        // OpenID Connect Discovery 1.0, section 4.3: the document must name
        // the issuer it was fetched for.
        if discovery.issuer != self.config.issuer {
            bail!(
                "discovery document names issuer {:?}, not {:?}",
                discovery.issuer,
                self.config.issuer
            );
        }
        if !discovery.jwks_uri.starts_with("https://") {
            bail!("jwks_uri {:?} is not https", discovery.jwks_uri);
        }
        self.get_json(&discovery.jwks_uri).await
    }

    /// The key for `kid`, fetching the JWKS when it is stale or lacks it.
    async fn key(&self, kid: Option<&str>) -> Result<Option<Jwk>, ApiError> {
        let mut cache = self.jwks.lock().await;
        let now = Instant::now();
        let stale = cache
            .fetched_at
            .is_none_or(|t| now.duration_since(t) > self.config.jwks_cache_lifetime);
        let find = |set: &JwkSet| -> Option<Jwk> {
            match kid {
                Some(kid) => set.find(kid).cloned(),
                // Without a kid only an unambiguous set will do.
                None if set.keys.len() == 1 => set.keys.first().cloned(),
                None => None,
            }
        };
        if !stale {
            if let Some(k) = cache.keys.as_ref().and_then(find) {
                return Ok(Some(k));
            }
            if cache.unknown_kid_backoff_until.is_some_and(|t| now < t) {
                return Ok(None);
            }
        }
        let unavailable = |why: &str| {
            ApiError::new(
                ErrorCode::IssuerUnavailable,
                format!(
                    "cannot fetch the signing keys of issuer {:?}: {why}",
                    self.config.issuer
                ),
            )
        };
        if let Some((until, why)) = &cache.failure_backoff_until {
            if now < *until {
                return Err(unavailable(why));
            }
        }
        let fetched = match self.fetch_jwks().await {
            Ok(set) => set,
            Err(e) => {
                let why = format!("{e:#}");
                tracing::warn!(issuer = %self.config.issuer, "cannot fetch JWKS: {why}");
                cache.failure_backoff_until =
                    Some((now + self.config.jwks_failure_backoff, why.clone()));
                return Err(unavailable(&why));
            }
        };
        cache.failure_backoff_until = None;
        let found = find(&fetched);
        cache.unknown_kid_backoff_until = found.is_none().then_some(now + UNKNOWN_KID_BACKOFF);
        cache.keys = Some(fetched);
        cache.fetched_at = Some(now);
        Ok(found)
    }
}

/// The refusal while `issuer` has no audience of its own: an exchange
/// against a shared default would let a token for one server work at another.
pub fn audience_unset(issuer: &Issuer) -> ApiError {
    refuse(
        ErrorCode::AudienceNotConfigured,
        format!(
            "this server has no OIDC audience for issuer {:?}, so it exchanges no OIDC tokens: its admin sets `[oidc] audience` (or `api-endpoint`) in server.toml",
            issuer.config.name
        ),
    )
}

fn decoding_key(jwk: &Jwk, alg: Algorithm) -> Option<DecodingKey> {
    // Only asymmetric keys of the token's family; an `oct` key in a JWKS
    // must never verify anything.
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256)
        | (AlgorithmParameters::EllipticCurve(_), Algorithm::ES256) => {
            DecodingKey::from_jwk(jwk).ok()
        }
        _ => None,
    }
}

impl OidcVerifier {
    /// `default_audience`: `[oidc] audience`, else the configured
    /// `api-endpoint`; never the listen address, which many servers share.
    pub fn new(issuers: &[IssuerConfig], default_audience: Option<&str>) -> Result<OidcVerifier> {
        Ok(OidcVerifier {
            issuers: issuers
                .iter()
                .map(|c| Issuer::new(c, default_audience))
                .collect::<Result<_>>()?,
        })
    }

    /// Checks signature (RS256/ES256 only), `iss`, exact `aud`,
    /// `exp`/`nbf`/`iat` within [`LEEWAY_SECS`], and that `sub` and `jti`
    /// exist. Single use of `jti` is the caller's (it needs the database).
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, ApiError> {
        let unverified = UnverifiedJwt::parse(token).map_err(|e| {
            refuse(
                ErrorCode::InvalidToken,
                format!("the OIDC token is refused: {e}"),
            )
        })?;
        let alg = match unverified.alg().unwrap_or_default() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err(refuse(
                    ErrorCode::InvalidToken,
                    format!(
                    "the OIDC token's algorithm {other:?} is not accepted (only RS256 and ES256)"
                ),
                ))
            }
        };
        let kid = unverified.kid();
        let iss = unverified.issuer().unwrap_or_default();
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.config.issuer == iss)
            .ok_or_else(|| {
                refuse(
                    ErrorCode::UnknownIssuer,
                    format!("tokens from issuer {iss:?} are not accepted by this server (see [[oidc.issuers]])"),
                )
            })?;
        let audience = issuer
            .audience
            .as_deref()
            .ok_or_else(|| audience_unset(issuer))?;
        let jwk = issuer.key(kid).await?.ok_or_else(|| {
            refuse(
                ErrorCode::InvalidToken,
                format!(
                    "issuer {iss:?} has no signing key with kid {:?}",
                    kid.unwrap_or("(none)")
                ),
            )
        })?;
        let key = decoding_key(&jwk, alg).ok_or_else(|| {
            refuse(
                ErrorCode::InvalidToken,
                format!(
                    "the issuer's key {:?} is not an {alg:?} key",
                    kid.unwrap_or("")
                ),
            )
        })?;

        let mut v = Validation::new(alg);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        v.set_issuer(&[&issuer.config.issuer]);
        v.set_audience(&[audience]);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let claims = match jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v) {
            Ok(d) => d.claims,
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind as K;
                return Err(match e.kind() {
                    K::ExpiredSignature => refuse(ErrorCode::Expired, "the OIDC token has expired (exp)"),
                    K::ImmatureSignature => {
                        refuse(ErrorCode::NotYetValid, "the OIDC token is not valid yet (nbf)")
                    }
                    K::InvalidAudience => refuse(
                        ErrorCode::WrongAudience,
                        format!(
                            "the OIDC token's audience is {}; this server wants exactly {:?} (GET /_api/v1/oidc/audience)",
                            unverified.claims.get("aud").map(Value::to_string).unwrap_or_else(|| "missing".into()),
                            audience
                        ),
                    ),
                    K::InvalidSignature => refuse(
                        ErrorCode::InvalidToken,
                        "the OIDC token's signature does not verify with the issuer's key",
                    ),
                    K::MissingRequiredClaim(c) => {
                        refuse(ErrorCode::InvalidToken, format!("the OIDC token has no {c:?} claim"))
                    }
                    other => {
                        tracing::debug!("OIDC token refused: {other:?}");
                        refuse(ErrorCode::InvalidToken, "the OIDC token is malformed")
                    }
                });
            }
        };
        // jsonwebtoken reads NumericDates as floats and takes an `aud` list
        // that merely contains ours: the strict rules are provenance's.
        let strict = |e: jwt::ClaimError| refuse(ErrorCode::InvalidToken, format!("{e}"));
        let exp = jwt::required_numeric_date(&claims, "exp").map_err(strict)?;
        let iat = jwt::required_numeric_date(&claims, "iat").map_err(strict)?;
        jwt::numeric_date(&claims, "nbf").map_err(strict)?;
        if !jwt::audience_is_exactly(&claims, audience) {
            return Err(refuse(
                ErrorCode::WrongAudience,
                format!(
                    "the OIDC token's audience is {}; this server wants exactly {audience:?} and no other beside it (GET /_api/v1/oidc/audience)",
                    claims.get("aud").map(Value::to_string).unwrap_or_default(),
                ),
            ));
        }
        let now = crate::clock::now();
        if exp > now.saturating_add(jwt::MAX_OIDC_LIFETIME) {
            return Err(refuse(
                ErrorCode::InvalidToken,
                format!(
                    "the OIDC token's exp is more than {} s away; CI tokens live minutes",
                    jwt::MAX_OIDC_LIFETIME
                ),
            ));
        }
        if iat > now + LEEWAY_SECS as i64 {
            return Err(refuse(
                ErrorCode::NotYetValid,
                "the OIDC token was issued in the future (iat)",
            ));
        }
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or_else(|| {
                refuse(
                    ErrorCode::InvalidToken,
                    "the OIDC token has no usable \"jti\" claim, so it could be replayed",
                )
            })?
            .to_string();
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(VerifiedToken {
            issuer_name: issuer.config.name.clone(),
            issuer_url: issuer.config.issuer.clone(),
            server_url: issuer.config.server_url.clone(),
            audience: audience.to_string(),
            subject,
            jti,
            exp,
            claims,
        })
    }
}
