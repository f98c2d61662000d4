//! Exporting provenance as an in-toto Statement v1 inside a DSSE envelope,
//! signed by the cache's Nix signing key, and verifying it offline with only
//! the key a Nix user already trusts (`name:base64`).
//!
//! DSSE's pre-authentication encoding is written by hand: it is one line of
//! the spec, and the crates that carry it pull in a whole Sigstore client.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::hash::NarHash;
use crate::signing::{PublicKey, SecretKey};

pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate: what the cache observed when the path was uploaded.
pub const PREDICATE_TYPE: &str = "https://provenix.dev/attestation/nix-upload/v1";

/// Predicate field: when the server signed the export (Unix seconds). An
/// attestation says what the cache knew then, not now.
pub const EXPORTED_AT: &str = "exportedAt";
/// Predicate field: whether the cache served the path when it signed the
/// export (false once deleted, expired, or revoked).
pub const SERVED: &str = "served";
/// Predicate field: every upload record of the path is revoked.
pub const REVOKED: &str = "revoked";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Envelope {
    /// base64 of the statement's JSON.
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvelopeSignature {
    /// The cache key's name (`main-1`).
    pub keyid: String,
    /// base64 of the raw ed25519 signature over the PAE.
    pub sig: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AttestationError {
    #[error("not a DSSE envelope: {0}")]
    Format(String),
    #[error("payload type is {0:?}, not {PAYLOAD_TYPE}")]
    PayloadType(String),
    #[error("no signature by key {0:?} verifies")]
    BadSignature(String),
    #[error("the payload is not an in-toto Statement v1: {0}")]
    Statement(String),
}

/// DSSE v1 pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The in-toto Statement for a store path whose NAR hashes to `nar_hash`.
pub fn statement(store_path: &str, nar_hash: &NarHash, predicate: Value) -> Value {
    serde_json::json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": store_path, "digest": {"sha256": nar_hash.to_hex()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    })
}

pub fn sign(statement: &Value, key: &SecretKey) -> Envelope {
    let payload = serde_json::to_vec(statement).expect("statement serializes");
    let nix_sig = key.sign(&pae(PAYLOAD_TYPE, &payload));
    let sig = nix_sig
        .split_once(':')
        .map(|(_, s)| s.to_string())
        .unwrap_or_default();
    Envelope {
        payload: B64.encode(&payload),
        payload_type: PAYLOAD_TYPE.into(),
        signatures: vec![EnvelopeSignature {
            keyid: key.name().to_string(),
            sig,
        }],
    }
}

/// Verifies the envelope with the cache's public key and returns the statement.
pub fn verify(envelope_json: &[u8], key: &PublicKey) -> Result<Value, AttestationError> {
    let env: Envelope = serde_json::from_slice(envelope_json)
        .map_err(|e| AttestationError::Format(e.to_string()))?;
    if env.payload_type != PAYLOAD_TYPE {
        return Err(AttestationError::PayloadType(env.payload_type));
    }
    let payload = B64
        .decode(&env.payload)
        .map_err(|e| AttestationError::Format(format!("payload is not base64: {e}")))?;
    let message = pae(&env.payload_type, &payload);
    let ok = env
        .signatures
        .iter()
        .any(|s| key.verify(&message, &format!("{}:{}", s.keyid, s.sig)));
    if !ok {
        return Err(AttestationError::BadSignature(key.name().to_string()));
    }
    let st: Value =
        serde_json::from_slice(&payload).map_err(|e| AttestationError::Statement(e.to_string()))?;
    if st["_type"] != STATEMENT_TYPE || !st["subject"].is_array() {
        return Err(AttestationError::Statement(
            "missing _type or subject".into(),
        ));
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn envelopes_verify_and_any_change_breaks_them() {
        let key = SecretKey::generate("main-1").unwrap();
        let st = statement(
            "/nix/store/7rjj86a15146cq1d3qy068lml7n8ykzm-hello",
            &NarHash::of(b"nar"),
            serde_json::json!({"cache": "main"}),
        );
        let env = serde_json::to_vec(&sign(&st, &key)).unwrap();
        assert_eq!(verify(&env, &key.public()).unwrap(), st);

        let other = SecretKey::generate("main-1").unwrap();
        assert!(matches!(
            verify(&env, &other.public()),
            Err(AttestationError::BadSignature(_))
        ));
        // Flip one byte of the payload (inside its base64) and of the signature.
        let mut e: Envelope = serde_json::from_slice(&env).unwrap();
        let mut payload = B64.decode(&e.payload).unwrap();
        payload[20] ^= 1;
        e.payload = B64.encode(&payload);
        let tampered = serde_json::to_vec(&e).unwrap();
        assert!(verify(&tampered, &key.public()).is_err());
        let mut e: Envelope = serde_json::from_slice(&env).unwrap();
        let mut sig = B64.decode(&e.signatures[0].sig).unwrap();
        sig[0] ^= 1;
        e.signatures[0].sig = B64.encode(&sig);
        assert!(verify(&serde_json::to_vec(&e).unwrap(), &key.public()).is_err());
    }
}
