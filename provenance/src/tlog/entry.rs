//! A log entry, version 1: what one ledger entry says, in bytes a verifier
//! reads without the server's database.
//!
//! ```text
//! provenix-log-entry-v1
//! {"kind":"upload","cache":"main","time":1796228812,"asserted":{...}}
//! <body>
//! ```
//!
//! The first line names the version; the second is a JSON object (fields
//! in the order below, `asserted` keys sorted, no spaces: one encoding per
//! entry) holding what the server asserts; the rest, to the entry's end, is
//! the body: exactly the bytes someone signed (an upload's statement, a
//! closure statement's text, a key's certificate) or, for what the server
//! itself decided (a revocation, a pin change, a deletion), the store paths
//! it touched, one per line. An entry must fit a bundle (64 KiB): a larger
//! body is replaced by its SHA-256 (`body_sha256`), and the body itself is
//! served by the provenance API, where that hash binds it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use thiserror::Error;

use super::tiles::MAX_ENTRY;

pub const VERSION_LINE: &str = "provenix-log-entry-v1";

/// What a ledger entry records (the ledger's `kind` column).
pub const KINDS: [&str; 8] = [
    "ca-certificate",
    "upload-key",
    "upload",
    "divergence",
    "closure-statement",
    "revocation",
    "pin-change",
    "path-deletion",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryHeader {
    pub kind: String,
    pub cache: String,
    /// When the server recorded it (Unix seconds).
    pub time: i64,
    /// What the server asserts beside the body: the key id and signature
    /// of a signed body, an upload's outcome, a revocation's actor and
    /// reason, and so on (docs/transparency-log.md lists them per kind).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub asserted: BTreeMap<String, Value>,
    /// Set when the body did not fit: its SHA-256 (hex), the body empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
    /// Set when even the asserted fields did not fit: the SHA-256 (hex) of
    /// their JSON (as `asserted` would have been written), `asserted` empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asserted_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub header: EntryHeader,
    pub body: Vec<u8>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("not a provenix log entry (no {VERSION_LINE} line)")]
    NotAnEntry,
    #[error("the entry's header is not its JSON object: {0}")]
    BadHeader(String),
    #[error("the entry is not in its one encoding")]
    NotCanonical,
    #[error("unknown entry kind {0:?}")]
    UnknownKind(String),
}

impl Entry {
    pub fn new(header: EntryHeader, body: Vec<u8>) -> Entry {
        Entry { header, body }
    }

    /// The entry's bytes, never more than a bundle holds: a body too large
    /// is replaced by its hash, and if the asserted fields alone are still
    /// too large, they are too.
    pub fn encode(&self) -> Vec<u8> {
        let whole = encode_parts(&self.header, &self.body);
        if whole.len() <= MAX_ENTRY {
            return whole;
        }
        let mut header = self.header.clone();
        header.body_sha256 = Some(hex::encode(Sha256::digest(&self.body)));
        let without_body = encode_parts(&header, &[]);
        if without_body.len() <= MAX_ENTRY {
            return without_body;
        }
        let asserted = serde_json::to_vec(&header.asserted).expect("a map serializes");
        header.asserted_sha256 = Some(hex::encode(Sha256::digest(asserted)));
        header.asserted = BTreeMap::new();
        let small = encode_parts(&header, &[]);
        assert!(small.len() <= MAX_ENTRY, "kind and cache are short");
        small
    }

    /// Reads an entry back; anything but the one encoding is refused.
    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        let rest = bytes
            .strip_prefix(VERSION_LINE.as_bytes())
            .and_then(|r| r.strip_prefix(b"\n"))
            .ok_or(EntryError::NotAnEntry)?;
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(EntryError::NotAnEntry)?;
        let header: EntryHeader = serde_json::from_slice(&rest[..end])
            .map_err(|e| EntryError::BadHeader(e.to_string()))?;
        if !KINDS.contains(&header.kind.as_str()) {
            return Err(EntryError::UnknownKind(header.kind));
        }
        let entry = Entry {
            header,
            body: rest[end + 1..].to_vec(),
        };
        if encode_parts(&entry.header, &entry.body) != bytes {
            return Err(EntryError::NotCanonical);
        }
        Ok(entry)
    }

    /// Whether `body` is this entry's body: held in it, or bound by its
    /// hash when it did not fit.
    pub fn binds(&self, body: &[u8]) -> bool {
        match &self.header.body_sha256 {
            Some(h) => self.body.is_empty() && *h == hex::encode(Sha256::digest(body)),
            None => self.body == body,
        }
    }
}

fn encode_parts(header: &EntryHeader, body: &[u8]) -> Vec<u8> {
    let json = serde_json::to_string(header).expect("a header serializes");
    let mut out = Vec::with_capacity(VERSION_LINE.len() + json.len() + body.len() + 2);
    out.extend_from_slice(VERSION_LINE.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(json.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn upload(body: Vec<u8>) -> Entry {
        let mut asserted = BTreeMap::new();
        asserted.insert("signature".to_string(), json!("c2ln"));
        asserted.insert("key_id".to_string(), json!("3f0c"));
        asserted.insert("outcome".to_string(), json!("uploaded"));
        Entry::new(
            EntryHeader {
                kind: "upload".into(),
                cache: "main".into(),
                time: 1796228812,
                asserted,
                body_sha256: None,
                asserted_sha256: None,
            },
            body,
        )
    }

    #[test]
    fn an_entry_has_one_encoding() {
        let e = upload(b"provenix-upload-statement-v2\n{\"cache\":\"main\"}".to_vec());
        let bytes = e.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            "provenix-log-entry-v1\n{\"kind\":\"upload\",\"cache\":\"main\",\"time\":1796228812,\"asserted\":{\"key_id\":\"3f0c\",\"outcome\":\"uploaded\",\"signature\":\"c2ln\"}}\nprovenix-upload-statement-v2\n{\"cache\":\"main\"}"
        );
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
        // The same header spelled another way is not the entry.
        let spaced = text.replacen("{\"kind\":", "{ \"kind\":", 1);
        assert_eq!(
            Entry::decode(spaced.as_bytes()),
            Err(EntryError::NotCanonical)
        );
        let unknown = text.replacen("\"kind\":\"upload\"", "\"kind\":\"gift\"", 1);
        assert!(matches!(
            Entry::decode(unknown.as_bytes()),
            Err(EntryError::UnknownKind(_))
        ));
        assert_eq!(
            Entry::decode(b"provenix-log-entry-v2\n{}\n"),
            Err(EntryError::NotAnEntry)
        );
        let extra = text.replacen("\"time\":1796228812", "\"time\":1796228812,\"x\":1", 1);
        assert!(matches!(
            Entry::decode(extra.as_bytes()),
            Err(EntryError::BadHeader(_))
        ));
    }

    #[test]
    fn a_body_too_large_for_a_bundle_is_bound_by_its_hash() {
        let body = vec![b'x'; MAX_ENTRY];
        let e = upload(body.clone());
        let bytes = e.encode();
        assert!(bytes.len() <= MAX_ENTRY);
        let back = Entry::decode(&bytes).unwrap();
        assert!(back.body.is_empty());
        assert!(back.binds(&body));
        assert!(!back.binds(b"another body"));
        let small = upload(b"small".to_vec());
        assert!(Entry::decode(&small.encode()).unwrap().binds(b"small"));
        // Asserted fields too large on their own (a selector as given).
        let mut huge = upload(body);
        huge.header
            .asserted
            .insert("selector".into(), serde_json::json!("k".repeat(70_000)));
        let bytes = huge.encode();
        assert!(bytes.len() <= MAX_ENTRY);
        let back = Entry::decode(&bytes).unwrap();
        assert!(back.header.asserted.is_empty());
        assert!(back.header.asserted_sha256.is_some());
    }
}
