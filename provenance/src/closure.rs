//! The closure statement: one signed statement by which a push vouches for
//! every path of its closure the cache already holds, instead of one upload
//! record per path per push (issue 18). The server keeps the exact signed
//! text (compressed) once and a small index row per path, and answers which
//! paths it did not hold so the client uploads those.
//!
//! The signed bytes are lines of text, so an auditor can read and re-verify
//! them with nothing but the upload key's certificate:
//!
//! ```text
//! provenix-closure-statement-v1
//! cache <cache>
//! key <key id>
//! nonce <nonce>
//! <store path> <NAR hash, sha256:nixbase32> <NAR size> <metadata digest>
//! ...
//! ```
//!
//! Paths are sorted and unique, and no field holds whitespace (validated),
//! so the text has one reading. An entry vouches for a path's NAR (hash and
//! size) and, by [`metadata_digest`], for its references, deriver and CA:
//! a vouch for the NAR alone would keep a revoked uploader's forged
//! references served once the vouch were the path's last unrevoked record.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::hash::NarHash;
use crate::store_path::StorePath;
use crate::upload::{draw_nonce, nonce_is_well_formed};

pub const CLOSURE_PREFIX: &str = "provenix-closure-statement-v1\n";

/// Paths one statement may vouch for: a client splits larger closures (a
/// statement of this size is about 120 KB of text).
pub const MAX_CLOSURE_PATHS: usize = 1000;

/// One path a statement vouches for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VouchedPath {
    /// Absolute store path.
    pub store_path: String,
    pub nar_hash: NarHash,
    pub nar_size: u64,
    /// [`metadata_digest`] of the path's references, deriver and CA.
    pub metadata: String,
}

/// 160 bits of SHA-256 over a path's references (base names, sorted and
/// unique), deriver (base name) and CA, one per line, in nixbase32: what a
/// closure line vouches for beside the NAR, in 32 characters.
pub fn metadata_digest(references: &[String], deriver: Option<&str>, ca: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let mut refs: Vec<&str> = references.iter().map(String::as_str).collect();
    refs.sort_unstable();
    refs.dedup();
    let text = format!(
        "{}\n{}\n{}\n",
        refs.join(" "),
        deriver.unwrap_or(""),
        ca.unwrap_or("")
    );
    crate::nixbase32::encode(&Sha256::digest(text.as_bytes())[..20])
}

/// The body of `POST /_api/v1/closure-statements`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClosureStatement {
    pub cache: String,
    pub paths: Vec<VouchedPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The key's signature over [`ClosureStatement::statement`], base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The server's answer: how many paths it recorded this statement for,
/// and the ones it does not hold (the client uploads those).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClosureResult {
    pub vouched: u64,
    pub missing: Vec<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ClosureError {
    #[error("a closure statement vouches for 1 to {MAX_CLOSURE_PATHS} paths, not {0}")]
    Count(usize),
    #[error("store path: {0}")]
    StorePath(String),
    #[error("paths must be sorted and unique ({0} is out of order or repeated)")]
    Order(String),
    #[error("{0}: a NAR is at least 8 bytes and at most 2^63-1")]
    BadSize(String),
    #[error("the statement has no nonce, or one outside 16 to 64 letters, digits, - and _")]
    BadNonce,
    #[error("the statement has no key id, or one with whitespace")]
    BadKeyId,
    #[error("the cache name holds whitespace")]
    BadCache,
    #[error("{0}: the metadata digest is not 32 nixbase32 characters")]
    BadMetadata(String),
    #[error("not a closure statement: {0}")]
    Text(&'static str),
}

fn has_whitespace(s: &str) -> bool {
    s.chars().any(char::is_whitespace) || s.is_empty()
}

impl ClosureStatement {
    /// The bytes the upload key signs (and the server keeps).
    pub fn statement(&self) -> Vec<u8> {
        let mut out = String::with_capacity(64 + self.paths.len() * 120);
        out.push_str(CLOSURE_PREFIX);
        out.push_str(&format!(
            "cache {}\nkey {}\nnonce {}\n",
            self.cache,
            self.key_id.as_deref().unwrap_or(""),
            self.nonce.as_deref().unwrap_or("")
        ));
        for p in &self.paths {
            out.push_str(&format!(
                "{} {} {} {}\n",
                p.store_path,
                p.nar_hash.to_nix_string(),
                p.nar_size,
                p.metadata
            ));
        }
        out.into_bytes()
    }

    /// Sorts the paths, sets the key and a fresh nonce, and signs.
    pub fn sign(&mut self, key_id: &str, key: &ed25519_dalek::SigningKey) {
        self.paths.sort_by(|a, b| a.store_path.cmp(&b.store_path));
        self.paths.dedup_by(|a, b| a.store_path == b.store_path);
        self.nonce = Some(draw_nonce());
        self.key_id = Some(key_id.to_string());
        self.signature = Some(crate::exchange::sign(key, &self.statement()));
    }

    /// Checks every field before anything is looked up; returns the paths
    /// parsed, in the statement's order.
    pub fn validate(&self, store_dir: &str) -> Result<Vec<StorePath>, ClosureError> {
        if self.paths.is_empty() || self.paths.len() > MAX_CLOSURE_PATHS {
            return Err(ClosureError::Count(self.paths.len()));
        }
        if has_whitespace(&self.cache) {
            return Err(ClosureError::BadCache);
        }
        if self.key_id.as_deref().is_none_or(has_whitespace) {
            return Err(ClosureError::BadKeyId);
        }
        if !self.nonce.as_deref().is_some_and(nonce_is_well_formed) {
            return Err(ClosureError::BadNonce);
        }
        let mut parsed = Vec::with_capacity(self.paths.len());
        for (i, p) in self.paths.iter().enumerate() {
            let sp = StorePath::parse(store_dir, &p.store_path)
                .map_err(|e| ClosureError::StorePath(format!("{}: {e}", p.store_path)))?;
            if has_whitespace(&p.store_path) {
                return Err(ClosureError::StorePath(p.store_path.clone()));
            }
            if i > 0 && self.paths[i - 1].store_path >= p.store_path {
                return Err(ClosureError::Order(p.store_path.clone()));
            }
            if p.nar_size < 8 || p.nar_size > i64::MAX as u64 {
                return Err(ClosureError::BadSize(p.store_path.clone()));
            }
            if crate::store_path::validate_hash_part(&p.metadata).is_err() {
                return Err(ClosureError::BadMetadata(p.store_path.clone()));
            }
            parsed.push(sp);
        }
        Ok(parsed)
    }

    /// Reads signed text back (for a verifier holding only the record):
    /// the inverse of [`ClosureStatement::statement`]. The signature is not
    /// part of the text; check it over the same bytes.
    pub fn parse(text: &str) -> Result<ClosureStatement, ClosureError> {
        let rest = text
            .strip_prefix(CLOSURE_PREFIX)
            .ok_or(ClosureError::Text("no closure statement header"))?;
        let mut lines = rest.lines();
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix(' '))
                .map(str::to_string)
                .ok_or(ClosureError::Text("a header line is missing"))
        };
        let cache = field("cache")?;
        let key_id = field("key")?;
        let nonce = field("nonce")?;
        if [&cache, &key_id, &nonce].iter().any(|f| has_whitespace(f)) {
            return Err(ClosureError::Text("a header field holds whitespace"));
        }
        let mut paths = Vec::new();
        for line in lines {
            let mut parts = line.split(' ');
            let (Some(store_path), Some(hash), Some(size), Some(metadata), None) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
            ) else {
                return Err(ClosureError::Text(
                    "a path line is not: path hash size metadata",
                ));
            };
            paths.push(VouchedPath {
                store_path: store_path.to_string(),
                nar_hash: NarHash::parse(hash)
                    .map_err(|_| ClosureError::Text("a NAR hash does not parse"))?,
                nar_size: size
                    .parse()
                    .map_err(|_| ClosureError::Text("a NAR size is not a number"))?,
                metadata: metadata.to_string(),
            });
        }
        let st = ClosureStatement {
            cache,
            paths,
            key_id: Some(key_id),
            nonce: Some(nonce),
            signature: None,
        };
        if st.statement() != text.as_bytes() {
            return Err(ClosureError::Text("not in canonical form"));
        }
        Ok(st)
    }

    /// The entry for `store_path`, if this statement vouches for it.
    pub fn entry(&self, store_path: &str) -> Option<&VouchedPath> {
        self.paths
            .binary_search_by(|p| p.store_path.as_str().cmp(store_path))
            .ok()
            .map(|i| &self.paths[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "/nix/store";

    fn path(hash_char: char, name: &str) -> VouchedPath {
        VouchedPath {
            store_path: format!("{DIR}/{}-{name}", hash_char.to_string().repeat(32)),
            nar_hash: NarHash::of(name.as_bytes()),
            nar_size: 96,
            metadata: metadata_digest(&[], None, None),
        }
    }

    #[test]
    fn the_metadata_digest_covers_references_deriver_and_ca() {
        let refs = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let base = metadata_digest(&refs(&["b-x", "a-y"]), Some("d.drv"), None);
        assert_eq!(base.len(), 32);
        // Order and repetition of references do not matter; anything else does.
        assert_eq!(
            base,
            metadata_digest(&refs(&["a-y", "b-x", "a-y"]), Some("d.drv"), None)
        );
        assert_ne!(base, metadata_digest(&refs(&["a-y"]), Some("d.drv"), None));
        assert_ne!(base, metadata_digest(&refs(&["b-x", "a-y"]), None, None));
        assert_ne!(
            base,
            metadata_digest(
                &refs(&["b-x", "a-y"]),
                Some("d.drv"),
                Some("fixed:r:sha256:x")
            )
        );
        // No field can spill into the next.
        assert_ne!(
            metadata_digest(&refs(&["a"]), Some(""), None),
            metadata_digest(&[], Some("a"), None)
        );
    }

    fn signed() -> (ClosureStatement, ed25519_dalek::SigningKey) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let mut st = ClosureStatement {
            cache: "main".into(),
            paths: vec![path('b', "hello"), path('a', "glibc"), path('b', "hello")],
            key_id: None,
            nonce: None,
            signature: None,
        };
        st.sign("k-1", &key);
        (st, key)
    }

    #[test]
    fn signing_sorts_dedups_and_the_text_reads_back() {
        let (st, key) = signed();
        assert_eq!(st.paths.len(), 2);
        assert!(st.paths[0].store_path < st.paths[1].store_path);
        assert_eq!(st.validate(DIR).unwrap().len(), 2);
        let text = String::from_utf8(st.statement()).unwrap();
        assert!(text.starts_with("provenix-closure-statement-v1\ncache main\nkey k-1\nnonce "));
        let back = ClosureStatement::parse(&text).unwrap();
        assert_eq!(back.paths, st.paths);
        let public = key.verifying_key();
        crate::exchange::verify(&public, text.as_bytes(), st.signature.as_deref().unwrap())
            .unwrap();
        assert!(back.entry(&st.paths[1].store_path).is_some());
        assert!(back.entry(&format!("{DIR}/{}-x", "c".repeat(32))).is_none());
    }

    #[test]
    fn refuses_what_could_be_read_two_ways() {
        let (st, _) = signed();
        let with = |f: &dyn Fn(&mut ClosureStatement)| {
            let mut s = st.clone();
            f(&mut s);
            s.validate(DIR).unwrap_err()
        };
        assert_eq!(with(&|s| s.paths.clear()), ClosureError::Count(0));
        assert!(matches!(
            with(&|s| s.paths.reverse()),
            ClosureError::Order(_)
        ));
        assert_eq!(with(&|s| s.cache = "a b".into()), ClosureError::BadCache);
        assert_eq!(
            with(&|s| s.key_id = Some("k\n1".into())),
            ClosureError::BadKeyId
        );
        assert_eq!(
            with(&|s| s.nonce = Some("short".into())),
            ClosureError::BadNonce
        );
        assert!(matches!(
            with(&|s| s.paths[0].nar_size = 3),
            ClosureError::BadSize(_)
        ));
        assert!(matches!(
            with(&|s| s.paths[0].store_path = "/tmp/x".into()),
            ClosureError::StorePath(_)
        ));
        assert!(matches!(
            with(&|s| s.paths[0].metadata = "e".repeat(32)),
            ClosureError::BadMetadata(_)
        ));
        let many = (0..=MAX_CLOSURE_PATHS).map(|_| path('a', "x")).collect();
        assert!(matches!(
            with(&|s| s.paths = Clone::clone(&many)),
            ClosureError::Count(_)
        ));
        // Text with anything out of place does not read back.
        let text = String::from_utf8(st.statement()).unwrap();
        assert!(ClosureStatement::parse(&text.replace("cache main", "cache  main")).is_err());
        assert!(ClosureStatement::parse(&format!("{text}extra line\n")).is_err());
        assert!(ClosureStatement::parse(&text.replace(" 96 ", " 096 ")).is_err());
    }
}
