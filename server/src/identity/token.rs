//! Access tokens: Attic-style JWTs (HS256 or RS256) whose `provenix.caches`
//! claim maps cache-name patterns to permissions.

use anyhow::{bail, Context, Result};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use provenix_policy::CachePermissions;
use provenix_provenance::jwt::{self, JwtShapeError, UnverifiedJwt};
use serde::{Deserialize, Serialize};

use crate::config::{Config, TokenSecret};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProvenixClaim {
    #[serde(default)]
    pub caches: CachePermissions,
    /// Set on the session token an exchange hands out with a key: such a
    /// token expires with its key and can never be exchanged for another
    /// (or a 15-minute key could be renewed forever without the CI token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenClaims {
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Vec<String>>,
    pub provenix: ProvenixClaim,
}

#[derive(Clone)]
pub struct TokenAuthority {
    alg: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    bound_issuer: Option<String>,
    bound_audiences: Option<Vec<String>>,
}

/// Decodes PEM to DER. By hand because it is a base64 body between two
/// marker lines, and the RSA key types below take DER.
fn pem_to_der(pem: &[u8]) -> Result<Vec<u8>> {
    let text = std::str::from_utf8(pem).context("PEM is not UTF-8")?;
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .context("PEM body is not base64")
}

impl TokenAuthority {
    pub fn from_config(config: &Config) -> Result<Self> {
        let (alg, encoding, decoding) = match config.token_secret()? {
            TokenSecret::Hs256(key) => (
                Algorithm::HS256,
                EncodingKey::from_secret(&key),
                DecodingKey::from_secret(&key),
            ),
            TokenSecret::Rs256(pem) => {
                let der = pem_to_der(&pem)?;
                let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der)
                    .or_else(|_| aws_lc_rs::rsa::KeyPair::from_der(&der))
                    .map_err(|e| {
                        anyhow::anyhow!("RS256 token secret is not an RSA private key: {e}")
                    })?;
                use aws_lc_rs::signature::KeyPair as _;
                let public_der = pair.public_key().as_ref().to_vec();
                let encoding = EncodingKey::from_rsa_pem(&pem)
                    .context("RS256 token secret is not a PEM RSA private key")?;
                (
                    Algorithm::RS256,
                    encoding,
                    DecodingKey::from_rsa_der(&public_der),
                )
            }
        };
        Ok(TokenAuthority {
            alg,
            encoding,
            decoding,
            bound_issuer: config.jwt.token_bound_issuer.clone(),
            bound_audiences: config.jwt.token_bound_audiences.clone(),
        })
    }

    pub fn mint(
        &self,
        sub: &str,
        validity: std::time::Duration,
        caches: CachePermissions,
    ) -> Result<String> {
        self.mint_with(
            sub,
            validity,
            ProvenixClaim {
                caches,
                key_id: None,
            },
        )
    }

    pub fn mint_with(
        &self,
        sub: &str,
        validity: std::time::Duration,
        provenix: ProvenixClaim,
    ) -> Result<String> {
        if sub.is_empty() {
            bail!("--sub must not be empty");
        }
        let now = crate::clock::now();
        let claims = TokenClaims {
            sub: sub.to_string(),
            iat: now,
            nbf: None,
            exp: now.saturating_add(validity.as_secs().min(i64::MAX as u64) as i64),
            iss: self.bound_issuer.clone(),
            aud: self.bound_audiences.clone(),
            provenix,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(self.alg),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verifies the shape (size, no `crit`), signature (only this server's
    /// algorithm), `exp`, `nbf`, and the bound issuer and audiences when
    /// configured: every audience the token names must be bound.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let unverified = UnverifiedJwt::parse(token)?;
        let mut v = Validation::new(self.alg);
        v.leeway = 30;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "sub"]);
        match &self.bound_issuer {
            Some(iss) => v.set_issuer(&[iss]),
            None => v.iss = None,
        }
        match &self.bound_audiences {
            Some(aud) => v.set_audience(aud),
            None => v.validate_aud = false,
        }
        let claims = jsonwebtoken::decode::<TokenClaims>(token, &self.decoding, &v)?.claims;
        if let Some(bound) = &self.bound_audiences {
            if !jwt::audiences_within(&unverified.claims, bound) {
                return Err(TokenError::AudienceNotBound);
            }
        }
        Ok(claims)
    }
}

/// Why one of this server's tokens is refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Shape(#[from] JwtShapeError),
    /// The token names an audience besides the bound ones.
    #[error("the token names an audience this server is not bound to")]
    AudienceNotBound,
    #[error(transparent)]
    Jwt(#[from] jsonwebtoken::errors::Error),
}
