//! Who is calling: a token from `Authorization: Bearer` or from Basic auth's
//! password (Nix's netrc support sends only Basic).

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use base64::Engine;
use provenix_policy::Permission;
use provenix_provenance::ErrorCode;
use std::sync::Arc;

use crate::error::ApiError;
use crate::identity::token::{TokenClaims, TokenError};
use crate::state::AppState;

pub struct Caller {
    pub claims: Option<TokenClaims>,
    /// The presented token, kept so the exchange can hash it (only there:
    /// not on every narinfo request).
    token: Option<String>,
    /// Set only by [`PullCaller`]: the presented token was refused, and the
    /// access decision chooses between this refusal and an anonymous pull.
    pub refused: Option<ApiError>,
}

/// The caller of the Nix protocol (nix-cache-info, narinfo, NAR, the
/// revoked-paths feed): a refused token is not refused here but handed to
/// the access decision, which serves public caches as if no token came
/// (a stale token in a netrc must not break substitution). Every other
/// handler takes [`Caller`], which refuses a bad token outright.
pub struct PullCaller(pub Caller);

impl Caller {
    pub fn permission(&self, cache: &str) -> Permission {
        self.claims
            .as_ref()
            .map(|c| c.provenix.caches.for_cache(cache))
            .unwrap_or_default()
    }

    /// `sha256:HEX` of the presented token: what a person's proof of
    /// possession binds in place of a `jti`.
    pub fn token_id(&self) -> Option<String> {
        self.token
            .as_deref()
            .map(provenix_provenance::exchange::access_token_id)
    }

    pub fn is_anonymous(&self) -> bool {
        self.claims.is_none()
    }

    pub fn subject(&self) -> &str {
        self.claims.as_ref().map_or("anonymous", |c| c.sub.as_str())
    }
}

fn bearer_or_basic(value: &str) -> Option<String> {
    if let Some(t) = value.strip_prefix("Bearer ") {
        return Some(t.trim().to_string());
    }
    let b64 = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    (!password.is_empty()).then(|| password.to_string())
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        identify(parts, state).await
    }
}

impl FromRequestParts<Arc<AppState>> for PullCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        Ok(PullCaller(match identify(parts, state).await {
            Ok(caller) => caller,
            Err(e) if e.code.http_status() == 401 => {
                tracing::debug!(
                    "token refused, answering as anonymous where allowed: {}",
                    e.message
                );
                Caller {
                    claims: None,
                    token: None,
                    refused: Some(e),
                }
            }
            Err(e) => return Err(e),
        }))
    }
}

async fn identify(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(Caller {
            claims: None,
            token: None,
            refused: None,
        });
    };
    let token = value
        .to_str()
        .ok()
        .and_then(bearer_or_basic)
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidToken, "Authorization header is neither 'Bearer TOKEN' nor Basic with the token as password"))?;
    match state.tokens.verify(&token) {
        Ok(claims) => {
            if let Some(key_id) = &claims.provenix.key_id {
                session_key_is_live(state, key_id).await?;
            }
            Ok(Caller {
                claims: Some(claims),
                token: Some(token),
                refused: None,
            })
        }
        Err(e) => Err(token_refusal(&e)),
    }
}

/// The refusal of a token this server did not accept, in words that tell
/// the caller what to do.
fn token_refusal(e: &TokenError) -> ApiError {
    use jsonwebtoken::errors::ErrorKind;
    let (code, why) = match e {
        TokenError::Shape(shape) => (ErrorCode::InvalidToken, shape.to_string()),
        TokenError::AudienceNotBound => (
            ErrorCode::InvalidToken,
            "the token's audience is not this server's".to_string(),
        ),
        TokenError::Jwt(e) => match e.kind() {
            ErrorKind::ExpiredSignature => {
                (ErrorCode::Expired, "the token has expired".to_string())
            }
            ErrorKind::ImmatureSignature => (
                ErrorCode::InvalidToken,
                "the token is not valid yet (nbf)".to_string(),
            ),
            ErrorKind::InvalidSignature => (
                ErrorCode::InvalidToken,
                "the token's signature does not verify with this server's key".to_string(),
            ),
            ErrorKind::InvalidAudience => (
                ErrorCode::InvalidToken,
                "the token's audience is not this server's".to_string(),
            ),
            ErrorKind::InvalidIssuer => (
                ErrorCode::InvalidToken,
                "the token's issuer is not this server's".to_string(),
            ),
            // The library's own words (decoder states, its list of
            // algorithms) tell a prober about internals, not the caller
            // what to do.
            other => {
                tracing::debug!("token refused: {other:?}");
                (
                    ErrorCode::InvalidToken,
                    "the token is malformed or not signed the way this server signs tokens"
                        .to_string(),
                )
            }
        },
    };
    ApiError::new(code, why)
}

/// A session token lives no longer than its upload key: revoking the key
/// ends the session at once, on every replica (the database is asked on
/// every request that presents one; nothing is cached in process).
async fn session_key_is_live(state: &AppState, key_id: &str) -> Result<(), ApiError> {
    match state.db.upload_key_by_id(key_id).await? {
        Some(key) if !key.revoked => Ok(()),
        Some(_) => Err(ApiError::new(
            ErrorCode::KeyRevoked,
            format!("upload key {key_id} was revoked, and with it this session token"),
        )),
        None => Err(ApiError::new(
            ErrorCode::InvalidToken,
            format!("this session token names upload key {key_id}, which this server never issued"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_tokens() {
        assert_eq!(bearer_or_basic("Bearer abc").as_deref(), Some("abc"));
        let basic = base64::engine::general_purpose::STANDARD.encode(":tok");
        assert_eq!(
            bearer_or_basic(&format!("Basic {basic}")).as_deref(),
            Some("tok")
        );
        let user = base64::engine::general_purpose::STANDARD.encode("user:tok");
        assert_eq!(
            bearer_or_basic(&format!("Basic {user}")).as_deref(),
            Some("tok")
        );
        assert_eq!(bearer_or_basic("Digest x"), None);
    }
}
