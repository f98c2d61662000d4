//! Nix store paths: `<store dir>/<32 nixbase32 chars>-<name>`.
//!
//! Parsing is strict because store paths arrive from untrusted clients and end
//! up in URLs, database keys and narinfo text.

use std::fmt;
use thiserror::Error;

use crate::nixbase32;

pub const DEFAULT_STORE_DIR: &str = "/nix/store";
pub const HASH_LEN: usize = 32;
const MAX_NAME_LEN: usize = 211;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StorePathError {
    #[error("store path {0:?} is not under the store directory {1:?}")]
    NotInStore(String, String),
    #[error("store path {0:?} has an invalid hash part")]
    BadHash(String),
    #[error("store path {0:?} has an invalid name (allowed: A-Z a-z 0-9 + - . _ ? =, not starting with '.', at most 211 characters)")]
    BadName(String),
    #[error("invalid store path hash {0:?}: expected 32 nixbase32 characters")]
    BadHashPart(String),
    #[error("invalid store directory {0:?}: must be an absolute path without a trailing slash")]
    BadStoreDir(String),
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath {
    hash: String,
    name: String,
}

/// Validates the 32-character hash part alone (as it appears in `<hash>.narinfo`).
pub fn validate_hash_part(s: &str) -> Result<(), StorePathError> {
    if s.len() == HASH_LEN && s.bytes().all(nixbase32::is_valid_char) {
        Ok(())
    } else {
        Err(StorePathError::BadHashPart(s.chars().take(64).collect()))
    }
}

pub fn validate_store_dir(dir: &str) -> Result<(), StorePathError> {
    let ok = dir.starts_with('/')
        && (dir.len() == 1 || !dir.ends_with('/'))
        && !dir.split('/').any(|c| c == "." || c == "..")
        && !dir.contains("//")
        && dir.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(StorePathError::BadStoreDir(dir.to_string()))
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(&b))
}

impl StorePath {
    /// Parses a full path such as `/nix/store/<hash>-hello-2.12`.
    pub fn parse(store_dir: &str, full: &str) -> Result<Self, StorePathError> {
        let rest = full
            .strip_prefix(store_dir)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| StorePathError::NotInStore(full.to_string(), store_dir.to_string()))?;
        Self::from_base_name(rest).map_err(|e| match e {
            StorePathError::BadHashPart(_) => StorePathError::BadHash(full.to_string()),
            StorePathError::BadName(_) => StorePathError::BadName(full.to_string()),
            other => other,
        })
    }

    /// Parses `<hash>-<name>`, the form narinfo `References:` use.
    pub fn from_base_name(base: &str) -> Result<Self, StorePathError> {
        if base.len() < HASH_LEN + 2 || base.as_bytes()[HASH_LEN] != b'-' {
            return Err(StorePathError::BadHashPart(base.to_string()));
        }
        let (hash, name) = (&base[..HASH_LEN], &base[HASH_LEN + 1..]);
        validate_hash_part(hash)?;
        if !valid_name(name) {
            return Err(StorePathError::BadName(base.to_string()));
        }
        Ok(StorePath {
            hash: hash.to_string(),
            name: name.to_string(),
        })
    }

    pub fn hash_part(&self) -> &str {
        &self.hash
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<hash>-<name>`
    pub fn base_name(&self) -> String {
        format!("{}-{}", self.hash, self.name)
    }

    pub fn to_absolute(&self, store_dir: &str) -> String {
        format!("{}/{}-{}", store_dir, self.hash, self.name)
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.hash, self.name)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({}-{})", self.hash, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/nix/store/7rjj86a15146cq1d3qy068lml7n8ykzm-hello-2.12.1";

    #[test]
    fn parses_a_real_store_path() {
        let p = StorePath::parse(DEFAULT_STORE_DIR, P).unwrap();
        assert_eq!(p.hash_part(), "7rjj86a15146cq1d3qy068lml7n8ykzm");
        assert_eq!(p.name(), "hello-2.12.1");
        assert_eq!(p.to_absolute(DEFAULT_STORE_DIR), P);
    }

    #[test]
    fn rejects_traversal_and_bad_parts() {
        for bad in [
            "/nix/store/7rjj86a15146cq1d3qy068lml7n8ykzm-../../etc",
            "/nix/store/7rjj86a15146cq1d3qy068lml7n8ykzm-a/b",
            "/nix/store/7rjj86a15146cq1d3qy068lml7n8ykzm-.hidden",
            "/nix/store/7rjj86a15146cq1d3qy068lml7n8ykze-hello",
            "/nix/store/short-hello",
            "/other/store/7rjj86a15146cq1d3qy068lml7n8ykzm-hello",
            "/nix/store/7rjj86a15146cq1d3qy068lml7n8ykzm-",
        ] {
            assert!(StorePath::parse(DEFAULT_STORE_DIR, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn store_dir_validation() {
        assert!(validate_store_dir("/nix/store").is_ok());
        assert!(validate_store_dir("/nix/store/").is_err());
        assert!(validate_store_dir("nix/store").is_err());
        assert!(validate_store_dir("/nix/../etc").is_err());
    }
}
