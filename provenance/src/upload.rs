//! What a client says about a path it uploads, and the server's answers.
//! The server validates every field before reading a byte of the NAR.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::hash::NarHash;
use crate::store_path::StorePath;

/// Sent as JSON in the `X-Provenix-Nar-Info` header of an upload (or as the
/// body of an existing-NAR claim).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UploadPathNarInfo {
    pub cache: String,
    /// Absolute store path.
    pub store_path: String,
    pub nar_hash: NarHash,
    pub nar_size: u64,
    /// Absolute store paths.
    #[serde(default)]
    pub references: Vec<String>,
    /// Absolute store path of the deriver, if known.
    #[serde(default)]
    pub deriver: Option<String>,
    #[serde(default)]
    pub ca: Option<String>,
    /// The short-term key that signed this statement (from the exchange).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Fresh for every statement ([`UploadPathNarInfo::sign`] draws it):
    /// the server records one upload per (key, nonce), so a statement read
    /// from the provenance (auditors may) cannot be replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// That key's signature over [`UploadPathNarInfo::statement`], base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The signed form of an upload: every field but the signature, in a fixed
/// order, JSON-escaped so no field can spill into another.
#[derive(Serialize)]
struct Statement<'a> {
    cache: &'a str,
    store_path: &'a str,
    nar_hash: String,
    nar_size: u64,
    references: Vec<&'a str>,
    deriver: Option<&'a str>,
    ca: Option<&'a str>,
    key_id: Option<&'a str>,
    nonce: Option<&'a str>,
}

/// v2 added the nonce; v1 statements (no nonce) remain in old records,
/// verifiable from their stored text, but are no longer accepted.
pub const STATEMENT_PREFIX: &str = "provenix-upload-statement-v2\n";

pub const UPLOAD_HEADER: &str = "x-provenix-nar-info";
/// More references than any real derivation output has; bounds the header.
pub const MAX_REFERENCES: usize = 10_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UploadInfoError {
    #[error("store path: {0}")]
    StorePath(String),
    #[error("reference {0}")]
    Reference(String),
    #[error("deriver: {0}")]
    Deriver(String),
    #[error("too many references ({0}; at most {MAX_REFERENCES})")]
    TooManyReferences(usize),
    #[error("the CA field is not a content address (fixed:... or text:...)")]
    BadCa,
    #[error("a NAR is at least 8 bytes; nar_size {0} cannot be right")]
    BadSize(u64),
    #[error("the statement has no nonce, or one outside 16 to 64 letters, digits, - and _ (a provenix client older than the server signed it?)")]
    BadNonce,
}

/// Whether `nonce` is a nonce a client draws: 16 to 64 URL-safe characters.
pub(crate) fn nonce_is_well_formed(nonce: &str) -> bool {
    (16..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The checked form: base names as narinfo writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidUpload {
    pub store_path: StorePath,
    pub references: Vec<String>,
    pub deriver: Option<String>,
}

/// What a cache holds for a path, in the terms a statement describes it:
/// references and deriver as base names (as [`ValidUpload`] has them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathDescription {
    pub nar_hash: String,
    pub nar_size: i64,
    pub references: Vec<String>,
    pub deriver: Option<String>,
    pub ca: Option<String>,
}

impl PathDescription {
    /// The first field in which `other` describes another path than this
    /// (references compared as sets), or None when they agree. A statement
    /// vouching for a stored path must describe it exactly: otherwise its
    /// record would keep false values under a valid signature.
    pub fn first_difference(&self, other: &PathDescription) -> Option<&'static str> {
        let set = |r: &[String]| {
            let mut r = r.to_vec();
            r.sort_unstable();
            r.dedup();
            r
        };
        if self.nar_hash != other.nar_hash {
            Some("nar_hash")
        } else if self.nar_size != other.nar_size {
            Some("nar_size")
        } else if set(&self.references) != set(&other.references) {
            Some("references")
        } else if self.deriver != other.deriver {
            Some("deriver")
        } else if self.ca != other.ca {
            Some("ca")
        } else {
            None
        }
    }
}

/// A fresh nonce for a statement: 18 random bytes, URL-safe base64.
pub(crate) fn draw_nonce() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut nonce = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(nonce)
}

impl UploadPathNarInfo {
    /// The bytes a short-term key signs. References are sorted and
    /// deduplicated so their order on the wire does not matter.
    pub fn statement(&self) -> Vec<u8> {
        let mut references: Vec<&str> = self.references.iter().map(String::as_str).collect();
        references.sort_unstable();
        references.dedup();
        let st = Statement {
            cache: &self.cache,
            store_path: &self.store_path,
            nar_hash: self.nar_hash.to_nix_string(),
            nar_size: self.nar_size,
            references,
            deriver: self.deriver.as_deref(),
            ca: self.ca.as_deref(),
            key_id: self.key_id.as_deref(),
            nonce: self.nonce.as_deref(),
        };
        let json = serde_json::to_string(&st).expect("statement serializes");
        format!("{STATEMENT_PREFIX}{json}").into_bytes()
    }

    /// Sets `key_id` and a fresh nonce, and signs the statement with the
    /// short-term key: every signing makes a statement of its own.
    pub fn sign(&mut self, key_id: &str, key: &ed25519_dalek::SigningKey) {
        self.nonce = Some(draw_nonce());
        self.key_id = Some(key_id.to_string());
        self.signature = None;
        self.signature = Some(crate::exchange::sign(key, &self.statement()));
    }

    pub fn validate(&self, store_dir: &str) -> Result<ValidUpload, UploadInfoError> {
        let store_path = StorePath::parse(store_dir, &self.store_path)
            .map_err(|e| UploadInfoError::StorePath(e.to_string()))?;
        if self.references.len() > MAX_REFERENCES {
            return Err(UploadInfoError::TooManyReferences(self.references.len()));
        }
        let mut references = self
            .references
            .iter()
            .map(|r| {
                StorePath::parse(store_dir, r)
                    .map(|p| p.base_name())
                    .map_err(|e| UploadInfoError::Reference(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        references.sort();
        references.dedup();
        let deriver = self
            .deriver
            .as_deref()
            .map(|d| StorePath::parse(store_dir, d).map(|p| p.base_name()))
            .transpose()
            .map_err(|e| UploadInfoError::Deriver(e.to_string()))?;
        if let Some(ca) = &self.ca {
            let ok = (ca.starts_with("fixed:") || ca.starts_with("text:"))
                && ca.len() < 200
                && ca.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(UploadInfoError::BadCa);
            }
        }
        if self.nar_size < 8 {
            return Err(UploadInfoError::BadSize(self.nar_size));
        }
        if !self.nonce.as_deref().is_some_and(nonce_is_well_formed) {
            return Err(UploadInfoError::BadNonce);
        }
        Ok(ValidUpload {
            store_path,
            references,
            deriver,
        })
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UploadOutcome {
    /// The NAR was streamed and stored.
    Uploaded,
    /// The server held the NAR already; only the path was recorded.
    Deduplicated,
    /// The cache already had this path with this NAR.
    Exists,
    /// (existing-NAR claims only) the server needs the NAR itself.
    NarRequired,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadResult {
    pub outcome: UploadOutcome,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MissingPathsRequest {
    pub cache: String,
    pub store_path_hashes: Vec<String>,
    /// Each path's NAR hash, in the same order (optional): the answer then
    /// says which missing paths the client may record without sending
    /// their NARs, so it asks `existing-nar` only for those.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nar_hashes: Vec<NarHash>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MissingPathsResponse {
    pub missing_paths: Vec<String>,
    /// Of `missing_paths`, those whose NAR (by the hash given) the server
    /// holds where the caller may already read it: the proof-of-possession
    /// rule of `existing-nar`, so this discloses no more than it does.
    #[serde(default)]
    pub nars_held: Vec<String>,
    /// The largest request body the server wants (the proxy in front of it
    /// may refuse more): NARs larger go in parts
    /// ([`crate::upload_parts`]). Absent or 0: any size in one request.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_request_body: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_differ_in_their_first_differing_field() {
        let stored = PathDescription {
            nar_hash: "sha256:a".into(),
            nar_size: 120,
            references: vec!["b-dep".into(), "a-dep".into()],
            deriver: Some("x.drv".into()),
            ca: None,
        };
        let same_refs_reordered = PathDescription {
            references: vec!["a-dep".into(), "b-dep".into(), "a-dep".into()],
            ..stored.clone()
        };
        assert_eq!(stored.first_difference(&same_refs_reordered), None);
        let cases: [(PathDescription, &str); 5] = [
            (
                PathDescription {
                    nar_hash: "sha256:b".into(),
                    ..stored.clone()
                },
                "nar_hash",
            ),
            (
                PathDescription {
                    nar_size: 8,
                    ..stored.clone()
                },
                "nar_size",
            ),
            (
                PathDescription {
                    references: vec![],
                    ..stored.clone()
                },
                "references",
            ),
            (
                PathDescription {
                    deriver: Some("evil.drv".into()),
                    ..stored.clone()
                },
                "deriver",
            ),
            (
                PathDescription {
                    ca: Some("fixed:sha256:x".into()),
                    ..stored.clone()
                },
                "ca",
            ),
        ];
        for (other, field) in cases {
            assert_eq!(stored.first_difference(&other), Some(field));
        }
    }

    fn info() -> UploadPathNarInfo {
        UploadPathNarInfo {
            cache: "main".into(),
            store_path: "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-ia-ref".into(),
            nar_hash: NarHash::of(b"x"),
            nar_size: 344,
            references: vec![
                "/nix/store/g7yx0xf9rzamh5jdhd4rnmqdrcrs17zf-tree".into(),
                "/nix/store/g7yx0xf9rzamh5jdhd4rnmqdrcrs17zf-tree".into(),
            ],
            deriver: Some("/nix/store/g7yx0xf9rzamh5jdhd4rnmqdrcrs17zf-x.drv".into()),
            ca: None,
            key_id: None,
            nonce: Some("a-nonce-of-sixteen-chars".into()),
            signature: None,
        }
    }

    #[test]
    fn valid_upload_gives_base_names() {
        let v = info().validate("/nix/store").unwrap();
        assert_eq!(v.references, vec!["g7yx0xf9rzamh5jdhd4rnmqdrcrs17zf-tree"]);
        assert_eq!(
            v.deriver.as_deref(),
            Some("g7yx0xf9rzamh5jdhd4rnmqdrcrs17zf-x.drv")
        );
    }

    #[test]
    fn rejects_bad_fields() {
        let mut i = info();
        i.store_path = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-../../etc".into();
        assert!(matches!(
            i.validate("/nix/store"),
            Err(UploadInfoError::StorePath(_))
        ));
        let mut i = info();
        i.references.push("/etc/passwd".into());
        assert!(matches!(
            i.validate("/nix/store"),
            Err(UploadInfoError::Reference(_))
        ));
        let mut i = info();
        i.ca = Some("evil\nSig: x".into());
        assert_eq!(i.validate("/nix/store"), Err(UploadInfoError::BadCa));
        let mut i = info();
        i.nar_size = 0;
        assert_eq!(i.validate("/nix/store"), Err(UploadInfoError::BadSize(0)));
        for nonce in [
            None,
            Some("short"),
            Some("sixteen chars ok"),
            Some(&*"n".repeat(65)),
        ] {
            let mut i = info();
            i.nonce = nonce.map(str::to_string);
            assert_eq!(
                i.validate("/nix/store"),
                Err(UploadInfoError::BadNonce),
                "{nonce:?}"
            );
        }
        assert!(info().validate("/gnu/store").is_err());
    }

    #[test]
    fn the_statement_covers_every_field() {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let mut signed = info();
        signed.sign("k1", &key);
        let sig = signed.signature.clone().unwrap();
        let vk = key.verifying_key();
        assert!(crate::exchange::verify(&vk, &signed.statement(), &sig).is_ok());
        // Reordered references sign the same statement.
        let mut reordered = signed.clone();
        reordered.references.reverse();
        assert_eq!(reordered.statement(), signed.statement());
        let tampered: Vec<UploadPathNarInfo> = vec![
            UploadPathNarInfo {
                cache: "other".into(),
                ..signed.clone()
            },
            UploadPathNarInfo {
                nar_size: 345,
                ..signed.clone()
            },
            UploadPathNarInfo {
                nar_hash: NarHash::of(b"y"),
                ..signed.clone()
            },
            UploadPathNarInfo {
                references: vec![],
                ..signed.clone()
            },
            UploadPathNarInfo {
                deriver: None,
                ..signed.clone()
            },
            UploadPathNarInfo {
                ca: Some("fixed:r:sha256:x".into()),
                ..signed.clone()
            },
            UploadPathNarInfo {
                key_id: Some("k2".into()),
                ..signed.clone()
            },
            UploadPathNarInfo {
                nonce: Some("another-nonce-0123456789".into()),
                ..signed.clone()
            },
            UploadPathNarInfo {
                store_path: "/nix/store/baaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-ia-ref".into(),
                ..signed.clone()
            },
        ];
        for t in tampered {
            assert!(
                crate::exchange::verify(&vk, &t.statement(), &sig).is_err(),
                "{t:?}"
            );
        }
        // Signing again draws a new nonce: another statement.
        let mut again = signed.clone();
        again.sign("k1", &key);
        assert_ne!(again.nonce, signed.nonce);
        assert_ne!(again.statement(), signed.statement());
        assert!(signed.validate("/nix/store").is_ok());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v = serde_json::to_value(info()).unwrap();
        v["sigs"] = serde_json::json!(["x"]);
        assert!(serde_json::from_value::<UploadPathNarInfo>(v).is_err());
    }
}
