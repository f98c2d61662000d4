//! A chunk's identity for deduplication: BLAKE3 of its uncompressed bytes,
//! written `blake3:<hex>` in the database.
//!
//! Every pushed byte is hashed twice: SHA-256 for the NAR hash Nix needs,
//! then the chunk hash. Both were SHA-256 at first, and the second pass was
//! about a sixth of a push's server CPU; BLAKE3 is as collision-resistant
//! for dedup and several times faster here. Chunks stored before the switch
//! keep their bare-hex SHA-256 hashes: `verify` still checks them, and new
//! uploads simply do not deduplicate against them.

use sha2::{Digest, Sha256};

const PREFIX: &str = "blake3:";

/// The BLAKE3 digest of a chunk's uncompressed bytes.
pub fn digest(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}

/// How a digest is written in the `chunks` table.
pub fn to_text(digest: &[u8; 32]) -> String {
    format!("{PREFIX}{}", hex::encode(digest))
}

/// The digest a `to_text` string names (None for anything else).
pub fn from_text(text: &str) -> Option<[u8; 32]> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(text.strip_prefix(PREFIX)?, &mut digest).ok()?;
    Some(digest)
}

/// Whether `data` is the chunk `text` names, in either format.
pub fn matches(text: &str, data: &[u8]) -> bool {
    match text.strip_prefix(PREFIX) {
        Some(_) => to_text(&digest(data)) == text,
        // Stored before BLAKE3: bare hex SHA-256.
        None => hex::encode(Sha256::digest(data)) == text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blake3_of_the_empty_input_is_the_published_vector() {
        // From the BLAKE3 specification's test vectors.
        assert_eq!(
            to_text(&digest(b"")),
            "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn text_round_trips_and_rejects_other_forms() {
        let d = digest(b"chunk");
        assert_eq!(from_text(&to_text(&d)), Some(d));
        assert_eq!(from_text(&hex::encode(d)), None);
        assert_eq!(from_text("blake3:zz"), None);
    }

    #[test]
    fn matches_checks_both_formats() {
        let data = b"some chunk bytes";
        assert!(matches(&to_text(&digest(data)), data));
        assert!(!matches(&to_text(&digest(data)), b"other bytes"));
        let legacy = hex::encode(Sha256::digest(data));
        assert!(matches(&legacy, data));
        assert!(!matches(&legacy, b"other bytes"));
    }
}
