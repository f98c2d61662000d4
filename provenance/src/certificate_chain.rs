//! Whether a short-term key's certificate was issued by the cache's CA:
//! the issuer name is the CA's subject, and the CA's Ed25519 key signed the
//! certificate's TBS bytes. x509-parser reads the DER; the signature is
//! checked with ed25519-dalek (the CA only ever signs with Ed25519, so the
//! general verifier, and the crypto backend it would pull in, is not
//! needed). Also: the certificate's public key, which must be the key the
//! log recorded.

use ed25519_dalek::{Signature, VerifyingKey};
use thiserror::Error;
use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::*;

/// id-Ed25519 (RFC 8410).
const ED25519: &str = "1.3.101.112";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("the {0} is not a PEM X.509 certificate")]
    NotACertificate(&'static str),
    #[error("the CA's key is not an Ed25519 key")]
    NotEd25519,
    #[error("the certificate was issued by {issuer:?}, not by the CA ({ca:?})")]
    OtherIssuer { issuer: String, ca: String },
    #[error("the CA's signature on the certificate does not verify")]
    BadSignature,
}

fn parse(pem: &[u8], what: &'static str) -> Result<Vec<u8>, ChainError> {
    let (_, pem) = parse_x509_pem(pem).map_err(|_| ChainError::NotACertificate(what))?;
    Ok(pem.contents)
}

fn ed25519_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<VerifyingKey, ChainError> {
    if spki.algorithm.algorithm.to_id_string() != ED25519 {
        return Err(ChainError::NotEd25519);
    }
    let bytes: [u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| ChainError::NotEd25519)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| ChainError::NotEd25519)
}

/// Checks that `cert_pem` was issued by `ca_pem`; returns the certified
/// Ed25519 public key.
pub fn check_chain(cert_pem: &[u8], ca_pem: &[u8]) -> Result<VerifyingKey, ChainError> {
    let cert_der = parse(cert_pem, "certificate")?;
    let ca_der = parse(ca_pem, "CA certificate")?;
    let (_, cert) = X509Certificate::from_der(&cert_der)
        .map_err(|_| ChainError::NotACertificate("certificate"))?;
    let (_, ca) = X509Certificate::from_der(&ca_der)
        .map_err(|_| ChainError::NotACertificate("CA certificate"))?;
    if cert.issuer().as_raw() != ca.subject().as_raw() {
        return Err(ChainError::OtherIssuer {
            issuer: cert.issuer().to_string(),
            ca: ca.subject().to_string(),
        });
    }
    let ca_key = ed25519_key(ca.public_key())?;
    if cert.signature_algorithm.algorithm.to_id_string() != ED25519 {
        return Err(ChainError::BadSignature);
    }
    let sig: [u8; 64] = cert
        .signature_value
        .data
        .as_ref()
        .try_into()
        .map_err(|_| ChainError::BadSignature)?;
    ca_key
        .verify_strict(cert.tbs_certificate.as_ref(), &Signature::from_bytes(&sig))
        .map_err(|_| ChainError::BadSignature)?;
    ed25519_key(cert.public_key())
}
