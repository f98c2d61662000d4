//! The identity exchange: a CI job's OIDC token (or a person's access token)
//! plus a fresh ed25519 public key become a short-lived certificate for that
//! key. Wire types and the proof-of-possession message live here so the
//! client and the server cannot disagree on a byte.

use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// `POST /_api/v1/keys/exchange`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    /// The cache the key will push to.
    pub cache: String,
    /// Raw ed25519 public key, standard base64.
    pub public_key: String,
    /// The CI job's OIDC token. Absent: the caller's own access token (from
    /// the Authorization header) is exchanged instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_token: Option<String>,
    /// Signature by the key over [`proof_message`], standard base64.
    pub proof: String,
}

/// Who a key belongs to, as the server verified it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Identity {
    /// `oidc` for CI tokens, `token` for this server's access tokens.
    pub kind: String,
    /// The issuer URL (for `token`: this server's endpoint).
    pub issuer: String,
    pub subject: String,
    /// The OIDC claims kept for provenance (never the raw token).
    #[serde(default)]
    pub claims: Map<String, Value>,
}

/// The answer of an exchange.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExchangeResponse {
    pub key_id: String,
    pub cache: String,
    /// PEM, issued by the server's CA.
    pub certificate: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub identity: Identity,
    /// A bearer token for the API calls around uploads (which paths are
    /// missing); it expires with the key. Uploads themselves need the key.
    pub access_token: String,
}

/// `GET /_api/v1/oidc/audience`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AudienceResponse {
    /// This server's name in proofs of possession (its api-endpoint).
    pub audience: String,
    /// Issuers this server accepts, by config name.
    pub issuers: Vec<IssuerInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuerInfo {
    pub name: String,
    pub issuer: String,
    /// The audience a CI job requests its OIDC token for; `None` while the
    /// server has none configured (its exchanges are refused).
    pub audience: Option<String>,
}

/// What the key's holder signs to prove it holds the key and meant it for
/// this token: binding `jti` and `aud` stops a stolen proof being replayed
/// with another token or at another server.
pub fn proof_message(audience: &str, token_id: &str, cache: &str, public_key_b64: &str) -> Vec<u8> {
    // JSON escaping keeps the fields unambiguous whatever they contain.
    let fields = serde_json::json!([audience, token_id, cache, public_key_b64]);
    format!("provenix-key-exchange-v1\n{fields}").into_bytes()
}

/// The `jti` a person's access token is known by in a proof (our tokens
/// carry none): the SHA-256 of the token.
pub fn access_token_id(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// Key ids: the first 128 bits of the SHA-256 of the raw public key.
pub fn key_id(public_key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(public_key.as_bytes())[..16])
}

pub fn encode_public_key(key: &VerifyingKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyFormatError {
    #[error("public_key is not 32 bytes of standard base64")]
    PublicKey,
    #[error("the signature is not 64 bytes of standard base64")]
    SignatureEncoding,
    #[error("the signature does not verify with this key")]
    BadSignature,
}

pub fn decode_public_key(b64: &str) -> Result<VerifyingKey, KeyFormatError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| KeyFormatError::PublicKey)?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| KeyFormatError::PublicKey)?;
    // Weak (small-order) keys would let anyone forge; the strict check refuses them.
    let key = VerifyingKey::from_bytes(&arr).map_err(|_| KeyFormatError::PublicKey)?;
    if key.is_weak() {
        return Err(KeyFormatError::PublicKey);
    }
    Ok(key)
}

pub fn sign(key: &SigningKey, msg: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.sign(msg).to_bytes())
}

/// Strict verification (no malleable signatures).
pub fn verify(key: &VerifyingKey, msg: &[u8], sig_b64: &str) -> Result<(), KeyFormatError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sig_b64)
        .map_err(|_| KeyFormatError::SignatureEncoding)?;
    let sig = Signature::from_slice(&bytes).map_err(|_| KeyFormatError::SignatureEncoding)?;
    key.verify_strict(msg, &sig)
        .map_err(|_| KeyFormatError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_binds_every_field() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let pk = encode_public_key(&key.verifying_key());
        let msg = proof_message("https://cache.example/", "jti-1", "main", &pk);
        let sig = sign(&key, &msg);
        assert_eq!(verify(&key.verifying_key(), &msg, &sig), Ok(()));
        for other in [
            proof_message("https://other.example/", "jti-1", "main", &pk),
            proof_message("https://cache.example/", "jti-2", "main", &pk),
            proof_message("https://cache.example/", "jti-1", "prod", &pk),
        ] {
            assert_eq!(
                verify(&key.verifying_key(), &other, &sig),
                Err(KeyFormatError::BadSignature)
            );
        }
        // A field cannot be shifted into its neighbour.
        assert_ne!(
            proof_message("a\",\"b", "c", "main", &pk),
            proof_message("a", "b\",\"c", "main", &pk)
        );
        let other = SigningKey::generate(&mut rand::rngs::OsRng);
        assert_eq!(
            verify(&other.verifying_key(), &msg, &sig),
            Err(KeyFormatError::BadSignature)
        );
    }

    #[test]
    fn public_keys_are_checked() {
        assert_eq!(decode_public_key("AAAA"), Err(KeyFormatError::PublicKey));
        // The identity point is a weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let b64 = base64::engine::general_purpose::STANDARD.encode(identity);
        assert_eq!(decode_public_key(&b64), Err(KeyFormatError::PublicKey));
        let key = SigningKey::generate(&mut rand::rngs::OsRng).verifying_key();
        assert_eq!(decode_public_key(&encode_public_key(&key)), Ok(key));
        assert_eq!(key_id(&key).len(), 32);
    }
}
