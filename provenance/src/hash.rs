//! The SHA-256 NAR hash in the spellings Nix uses: `sha256:<nixbase32>`
//! (narinfo), `sha256:<hex>` (older tools) and SRI `sha256-<base64>`
//! (`nix path-info --json`).

use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;
use thiserror::Error;

use crate::nixbase32;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NarHash(pub [u8; 32]);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid NAR hash {input:?}: expected sha256:<nixbase32|hex> or sha256-<base64>")]
pub struct HashParseError {
    pub input: String,
}

impl NarHash {
    pub fn of(bytes: &[u8]) -> Self {
        NarHash(Sha256::digest(bytes).into())
    }

    pub fn parse(s: &str) -> Result<Self, HashParseError> {
        let err = || HashParseError {
            input: s.chars().take(100).collect(),
        };
        let bytes = if let Some(rest) = s.strip_prefix("sha256:") {
            match rest.len() {
                52 => nixbase32::decode(rest, 32).map_err(|_| err())?,
                64 => hex::decode(rest).map_err(|_| err())?,
                _ => return Err(err()),
            }
        } else if let Some(rest) = s.strip_prefix("sha256-") {
            base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| err())?
        } else {
            return Err(err());
        };
        let arr: [u8; 32] = bytes.try_into().map_err(|_| err())?;
        Ok(NarHash(arr))
    }

    /// `sha256:<nixbase32>`, the form narinfo and fingerprints use.
    pub fn to_nix_string(&self) -> String {
        format!("sha256:{}", nixbase32::encode(&self.0))
    }

    /// The bare nixbase32 digest, used in NAR URLs.
    pub fn to_nixbase32(&self) -> String {
        nixbase32::encode(&self.0)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for NarHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_nix_string())
    }
}

impl fmt::Debug for NarHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NarHash({})", self.to_nix_string())
    }
}

impl serde::Serialize for NarHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_nix_string())
    }
}

impl<'de> serde::Deserialize<'de> for NarHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NarHash::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_of_the_same_hash() {
        let h = NarHash::of(b"");
        let nix32 = "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
        let hexs = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let sri = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert_eq!(NarHash::parse(nix32).unwrap(), h);
        assert_eq!(NarHash::parse(hexs).unwrap(), h);
        assert_eq!(NarHash::parse(sri).unwrap(), h);
        assert_eq!(h.to_nix_string(), nix32);
    }

    #[test]
    fn rejects_other_algorithms_and_lengths() {
        assert!(NarHash::parse("md5:abc").is_err());
        assert!(NarHash::parse("sha256:abc").is_err());
        assert!(NarHash::parse("sha256-AAAA").is_err());
    }
}
