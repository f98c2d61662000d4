//! Signed checkpoints of a cache's log (c2sp.org/tlog-checkpoint, a
//! c2sp.org/signed-note): origin, size, root. The key is the cache's log
//! key, an ed25519 key apart from its narinfo signing key, named after the
//! origin, signature type 0x01, verifier key `<origin>+<id>+<base64>`.

use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use signed_note::{Note, Signer, StandardVerifier, VerifierList};
use thiserror::Error;
use tlog_tiles::{Checkpoint, Hash};

/// The origin line of a cache's log: the scheme-less URL prefix its tiles
/// are served under (`cache.example.org/main/tlog`), as the specification
/// recommends, so it names the server and the cache.
pub fn origin(api_endpoint: &str, cache: &str) -> String {
    let host = api_endpoint
        .split_once("://")
        .map_or(api_endpoint, |(_, rest)| rest)
        .trim_end_matches('/');
    format!("{host}/{cache}/tlog")
}

/// A log key: signs a log's checkpoints.
pub struct LogKey {
    origin: String,
    key: SigningKey,
    id: u32,
}

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("the origin {0:?} cannot name a signed-note key (empty, or holds spaces or +)")]
    BadOrigin(String),
    #[error("not a signed note: {0}")]
    NotANote(String),
    #[error("the checkpoint is not signed by the log's key: {0}")]
    Unsigned(String),
    #[error("the note is not a checkpoint")]
    NotACheckpoint,
    #[error("the checkpoint is of {found:?}, not of {expected:?}")]
    WrongOrigin { expected: String, found: String },
    #[error("verifier key: {0}")]
    BadVerifierKey(String),
}

impl LogKey {
    pub fn new(origin: &str, key: SigningKey) -> Result<LogKey, CheckpointError> {
        if !signed_note::is_key_name_valid(origin) {
            return Err(CheckpointError::BadOrigin(origin.to_string()));
        }
        let id = signed_note::key_id(origin, &typed_public_key(&key.verifying_key()));
        Ok(LogKey {
            origin: origin.to_string(),
            key,
            id,
        })
    }

    /// The verifier key clients and witnesses are given
    /// (`<origin>+<key id>+<base64(0x01 || public key)>`).
    pub fn verifier_key(&self) -> String {
        signed_note::new_ed25519_verifier_key(&self.origin, &self.key.verifying_key())
    }

    /// The signed checkpoint of the tree of `size` records with `root`.
    pub fn sign(&self, size: u64, root: Hash) -> Vec<u8> {
        sign_with(&[self], size, root)
    }
}

/// The checkpoint signed by each of `keys` (of one origin): while a
/// rotated-out key overlaps its successor, checkpoints carry both
/// signatures, so clients and witnesses that trust either verify them.
pub fn sign_with(keys: &[&LogKey], size: u64, root: Hash) -> Vec<u8> {
    let origin = &keys.first().expect("at least one key").origin;
    let text = Checkpoint::new(origin, size, root, "")
        .expect("a valid origin")
        .to_bytes();
    let mut note = Note::new(&text, &[]).expect("a checkpoint is a valid note text");
    let signers: Vec<&dyn Signer> = keys.iter().map(|k| *k as &dyn Signer).collect();
    note.add_sigs(&signers).expect("a valid key name");
    note.to_bytes()
}

impl Signer for LogKey {
    fn name(&self) -> &str {
        &self.origin
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

/// Signature type 0x01 (ed25519) followed by the key, as key ids hash it.
fn typed_public_key(key: &VerifyingKey) -> Vec<u8> {
    [&[1u8][..], key.as_bytes()].concat()
}

/// A checkpoint whose log signature verified.
#[derive(Debug)]
pub struct VerifiedCheckpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// The note as received (its text, the log's signature and any others,
    /// such as witnesses' cosignatures).
    pub note: Vec<u8>,
}

/// Verifies a signed checkpoint against the log's verifier key and
/// requires its origin to be `origin`.
pub fn verify(
    note: &[u8],
    verifier_key: &str,
    origin: &str,
) -> Result<VerifiedCheckpoint, CheckpointError> {
    let verifier = StandardVerifier::new(verifier_key)
        .map_err(|e| CheckpointError::BadVerifierKey(e.to_string()))?;
    let parsed = Note::from_bytes(note).map_err(|e| CheckpointError::NotANote(e.to_string()))?;
    parsed
        .verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|e| CheckpointError::Unsigned(e.to_string()))?;
    let cp = Checkpoint::from_bytes(parsed.text()).map_err(|_| CheckpointError::NotACheckpoint)?;
    if cp.origin() != origin {
        return Err(CheckpointError::WrongOrigin {
            expected: origin.to_string(),
            found: cp.origin().to_string(),
        });
    }
    Ok(VerifiedCheckpoint {
        origin: cp.origin().to_string(),
        size: cp.size(),
        root: *cp.hash(),
        note: note.to_vec(),
    })
}

/// The base64 of a root hash, as checkpoints write it.
pub fn root_base64(root: &Hash) -> String {
    base64::engine::general_purpose::STANDARD.encode(root.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_signed_by_two_keys_verifies_with_either() {
        let origin = "cache.example.org/main/tlog";
        let old = LogKey::new(origin, SigningKey::from_bytes(&[1; 32])).unwrap();
        let new = LogKey::new(origin, SigningKey::from_bytes(&[2; 32])).unwrap();
        let third = LogKey::new(origin, SigningKey::from_bytes(&[3; 32])).unwrap();
        let note = sign_with(&[&new, &old], 5, Hash([9; 32]));
        for k in [&old, &new] {
            let cp = verify(&note, &k.verifier_key(), origin).unwrap();
            assert_eq!((cp.size, cp.root), (5, Hash([9; 32])));
        }
        assert!(verify(&note, &third.verifier_key(), origin).is_err());
    }

    fn key(seed: u8) -> LogKey {
        LogKey::new(
            "cache.example.org/main/tlog",
            SigningKey::from_bytes(&[seed; 32]),
        )
        .unwrap()
    }

    #[test]
    fn origins_name_the_server_and_cache() {
        assert_eq!(
            origin("https://cache.example.org/", "main"),
            "cache.example.org/main/tlog"
        );
        assert_eq!(
            origin("http://127.0.0.1:8080", "ci"),
            "127.0.0.1:8080/ci/tlog"
        );
    }

    #[test]
    fn a_checkpoint_is_the_specifications_note_and_verifies() {
        let k = key(7);
        let root = Hash([0xab; 32]);
        let note = k.sign(20852163, root);
        let text = String::from_utf8(note.clone()).unwrap();
        let (body, sig) = text.split_once("\n\n").unwrap();
        assert_eq!(
            body,
            format!(
                "cache.example.org/main/tlog\n20852163\n{}",
                root_base64(&root)
            )
        );
        assert!(sig.starts_with("— cache.example.org/main/tlog "));
        let vkey = k.verifier_key();
        assert!(vkey.starts_with("cache.example.org/main/tlog+"));
        let cp = verify(&note, &vkey, "cache.example.org/main/tlog").unwrap();
        assert_eq!((cp.size, cp.root), (20852163, root));
        // Another key, another origin, a changed size: refused.
        assert!(matches!(
            verify(&note, &key(8).verifier_key(), "cache.example.org/main/tlog"),
            Err(CheckpointError::Unsigned(_))
        ));
        assert!(matches!(
            verify(&note, &vkey, "cache.example.org/other/tlog"),
            Err(CheckpointError::WrongOrigin { .. })
        ));
        let forged = text.replace("20852163", "20852164");
        assert!(verify(forged.as_bytes(), &vkey, "cache.example.org/main/tlog").is_err());
        assert!(LogKey::new("has space", SigningKey::from_bytes(&[1; 32])).is_err());
    }
}
