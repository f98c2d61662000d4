//! Nix signing keys in Nix's own text format, as written by
//! `nix-store --generate-binary-cache-key` and `nix key generate-secret`:
//! secret `name:base64(seed || public)`, public `name:base64(public)`,
//! signature `name:base64(ed25519 signature)`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use std::fmt;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key is not of the form NAME:BASE64")]
    Format,
    #[error("key name {0:?} is invalid (non-empty, no ':' or whitespace)")]
    Name(String),
    #[error("key material is not valid base64 of the right length")]
    Material,
    #[error("secret key's public half does not match its seed")]
    Mismatch,
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

fn split(s: &str) -> Result<(&str, Vec<u8>), KeyError> {
    let (name, material) = s.trim().split_once(':').ok_or(KeyError::Format)?;
    if !valid_key_name(name) {
        return Err(KeyError::Name(name.to_string()));
    }
    let bytes = B64.decode(material).map_err(|_| KeyError::Material)?;
    Ok((name, bytes))
}

#[derive(Clone)]
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    key: VerifyingKey,
}

impl SecretKey {
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        if !valid_key_name(name) {
            return Err(KeyError::Name(name.to_string()));
        }
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        Ok(SecretKey {
            name: name.to_string(),
            key,
        })
    }

    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let (name, bytes) = split(s)?;
        let bytes: [u8; 64] = bytes.try_into().map_err(|_| KeyError::Material)?;
        let key = SigningKey::from_keypair_bytes(&bytes).map_err(|_| KeyError::Mismatch)?;
        Ok(SecretKey {
            name: name.to_string(),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The secret in Nix's text format. Handle with care: this is the key.
    pub fn to_nix_string(&self) -> String {
        format!("{}:{}", self.name, B64.encode(self.key.to_keypair_bytes()))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Signs `msg`, returning `name:base64(signature)` as in narinfo `Sig:` lines.
    pub fn sign(&self, msg: &[u8]) -> String {
        format!(
            "{}:{}",
            self.name,
            B64.encode(self.key.sign(msg).to_bytes())
        )
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}:<redacted>)", self.name)
    }
}

impl PublicKey {
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let (name, bytes) = split(s)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Material)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Material)?;
        Ok(PublicKey {
            name: name.to_string(),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn to_nix_string(&self) -> String {
        format!("{}:{}", self.name, B64.encode(self.key.as_bytes()))
    }

    /// Verifies a `name:base64(signature)` string over `msg`. A signature made
    /// under another key name never verifies, as in Nix.
    pub fn verify(&self, msg: &[u8], sig: &str) -> bool {
        let Some((name, b64)) = sig.split_once(':') else {
            return false;
        };
        if name != self.name {
            return false;
        }
        let Ok(bytes) = B64.decode(b64) else {
            return false;
        };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(&bytes) else {
            return false;
        };
        self.key.verify(msg, &sig).is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_nix_string())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_nix_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_signs() {
        let sk = SecretKey::generate("cache-1").unwrap();
        let again = SecretKey::parse(&sk.to_nix_string()).unwrap();
        let sig = again.sign(b"hello");
        assert!(sk.public().verify(b"hello", &sig));
        assert!(!sk.public().verify(b"hellp", &sig));
        let pk = PublicKey::parse(&sk.public().to_nix_string()).unwrap();
        assert_eq!(pk, sk.public());
    }

    #[test]
    fn rejects_other_names_and_garbage() {
        let a = SecretKey::generate("a").unwrap();
        let b = SecretKey::parse(&a.to_nix_string().replacen("a:", "b:", 1)).unwrap();
        assert!(!a.public().verify(b"m", &b.sign(b"m")));
        assert_eq!(SecretKey::parse("nocolon").unwrap_err(), KeyError::Format);
        assert_eq!(SecretKey::parse("a:AAAA").unwrap_err(), KeyError::Material);
        assert!(SecretKey::parse(":AAAA").is_err());
    }
}
