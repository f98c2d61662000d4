//! Witnessing (c2sp.org/tlog-witness, c2sp.org/tlog-cosignature): the
//! `add-checkpoint` request a log sends, the checks a witness makes before
//! it cosigns, and Ed25519 cosignatures (`cosignature/v1`, signature type
//! 0x04) made and verified. Pure: the witness's state and the HTTP are
//! the server's (`server/src/witness/`).
//!
//! Ed25519 rather than the ML-DSA-44 the specification now recommends for
//! new deployments: every witness in the public network today speaks
//! Ed25519, and no ML-DSA crate was vetted for this machine yet
//! (docs/transparency-log.md).

use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use signed_note::{Note, Verifier};
use thiserror::Error;
use tlog_tiles::{Checkpoint, Hash};

/// Signature type of Ed25519 cosignatures.
const COSIGNATURE_V1: u8 = 0x04;
/// At most this many consistency proof lines in a request.
pub const MAX_PROOF_LINES: usize = 63;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The message a `cosignature/v1` signs: header, time, the note's text.
fn cosigned_message(note_text: &[u8], time: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {time}\n").into_bytes();
    m.extend_from_slice(note_text);
    m
}

/// A witness's (or any cosigner's) key.
pub struct Cosigner {
    name: String,
    key: SigningKey,
    id: u32,
}

impl Cosigner {
    pub fn new(name: &str, key: SigningKey) -> Result<Cosigner, WitnessError> {
        if !signed_note::is_key_name_valid(name) {
            return Err(WitnessError::BadName(name.to_string()));
        }
        let id = key_id(name, &key.verifying_key());
        Ok(Cosigner {
            name: name.to_string(),
            key,
            id,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<name>+<id>+base64(0x04 || public key)`.
    pub fn verifier_key(&self) -> String {
        verifier_key(&self.name, &self.key.verifying_key())
    }

    /// The signature line cosigning `note_text` (a checkpoint's text, with
    /// its final newline) at `time`.
    pub fn cosign(&self, note_text: &[u8], time: u64) -> String {
        let sig = self.key.sign(&cosigned_message(note_text, time));
        let mut bytes = self.id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&time.to_be_bytes());
        bytes.extend_from_slice(&sig.to_bytes());
        format!("— {} {}\n", self.name, b64().encode(bytes))
    }
}

fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    signed_note::key_id(name, &[&[COSIGNATURE_V1][..], key.as_bytes()].concat())
}

fn verifier_key(name: &str, key: &VerifyingKey) -> String {
    format!(
        "{name}+{:08x}+{}",
        key_id(name, key),
        b64().encode([&[COSIGNATURE_V1][..], key.as_bytes()].concat())
    )
}

/// Verifies `cosignature/v1` signatures of one cosigner.
pub struct CosignatureVerifier {
    name: String,
    key: VerifyingKey,
    id: u32,
}

impl CosignatureVerifier {
    /// From a verifier key `<name>+<id>+base64(0x04 || key)`.
    pub fn new(vkey: &str) -> Result<CosignatureVerifier, WitnessError> {
        let bad = || WitnessError::BadVerifierKey(vkey.to_string());
        let mut parts = vkey.splitn(3, '+');
        let (name, id, key) = (
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
        );
        let key = b64().decode(key).map_err(|_| bad())?;
        if key.len() != 33 || key[0] != COSIGNATURE_V1 || !signed_note::is_key_name_valid(name) {
            return Err(bad());
        }
        let key =
            VerifyingKey::from_bytes(key[1..].try_into().expect("32 bytes")).map_err(|_| bad())?;
        let id_value = u32::from_str_radix(id, 16).map_err(|_| bad())?;
        if id.len() != 8 || id_value != key_id(name, &key) {
            return Err(bad());
        }
        Ok(CosignatureVerifier {
            name: name.to_string(),
            key,
            id: id_value,
        })
    }
}

impl Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((time, sig)) = sig.split_first_chunk::<8>() else {
            return false;
        };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        let time = u64::from_be_bytes(*time);
        // Zero is forbidden; a time more than a day ahead is no cosigner's
        // clock (tlog-cosignature: verifiers may reject future times).
        let latest = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + 86_400;
        time != 0 && time <= latest && self.key.verify(&cosigned_message(msg, time), &sig).is_ok()
    }
}

/// How many of `witnesses` (verifier keys) validly cosigned `note`; a
/// signature by a listed witness that fails to verify is an error.
pub fn count_cosignatures(note: &[u8], witnesses: &[String]) -> Result<usize, WitnessError> {
    let parsed = Note::from_bytes(note).map_err(|e| WitnessError::BadNote(e.to_string()))?;
    let mut verifiers: Vec<Box<dyn Verifier>> = Vec::new();
    for w in witnesses {
        verifiers.push(Box::new(CosignatureVerifier::new(w)?));
    }
    if verifiers.is_empty() {
        return Ok(0);
    }
    match parsed.verify(&signed_note::VerifierList::new(verifiers)) {
        Ok((verified, _)) => Ok(verified.len()),
        Err(signed_note::NoteError::UnverifiedNote) => Ok(0),
        Err(e) => Err(WitnessError::BadNote(e.to_string())),
    }
}

/// An `add-checkpoint` request.
#[derive(Debug, Clone, PartialEq)]
pub struct AddCheckpoint {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    /// The checkpoint, as a signed note.
    pub checkpoint: Vec<u8>,
}

impl AddCheckpoint {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old_size).into_bytes();
        for h in &self.proof {
            out.extend_from_slice(b64().encode(h.0).as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.checkpoint);
        out
    }

    /// Reads a request body strictly: `old N` without leading zeros, at
    /// most 63 base64 hashes, an empty line, the checkpoint.
    pub fn parse(body: &[u8]) -> Result<AddCheckpoint, WitnessError> {
        let bad = |why: &str| WitnessError::BadRequest(why.to_string());
        let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .ok_or_else(|| bad("no old size line"))?;
        if old.is_empty()
            || !old.bytes().all(|b| b.is_ascii_digit())
            || (old.len() > 1 && old.starts_with('0'))
        {
            return Err(bad("the old size is not a decimal without leading zeros"));
        }
        let old_size: u64 = old.parse().map_err(|_| bad("the old size is too large"))?;
        let mut proof = Vec::new();
        for l in lines {
            let bytes = b64()
                .decode(l)
                .map_err(|_| bad("a proof line is not base64"))?;
            let h: [u8; 32] = bytes
                .try_into()
                .map_err(|_| bad("a proof line is not a 32-byte hash"))?;
            proof.push(Hash(h));
        }
        if proof.len() > MAX_PROOF_LINES {
            return Err(bad("more than 63 proof lines"));
        }
        Ok(AddCheckpoint {
            old_size,
            proof,
            checkpoint: checkpoint.as_bytes().to_vec(),
        })
    }
}

/// Why a witness does not cosign, with the status the protocol gives it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WitnessError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("unknown log origin {0:?}")]
    UnknownLog(String),
    #[error("the checkpoint is not signed by the log's key")]
    NotSigned,
    #[error("the old size {old} is larger than the checkpoint's {size}")]
    OldTooLarge { old: u64, size: u64 },
    #[error("the witness's latest checkpoint of this log has {0} entries")]
    Conflict(u64),
    #[error("not consistent: {0}")]
    Inconsistent(String),
    #[error("cosigner name {0:?} cannot name a key")]
    BadName(String),
    #[error("bad verifier key {0:?}")]
    BadVerifierKey(String),
    #[error("bad note: {0}")]
    BadNote(String),
}

impl WitnessError {
    /// The HTTP status tlog-witness prescribes.
    pub fn status(&self) -> u16 {
        match self {
            WitnessError::BadRequest(_) | WitnessError::OldTooLarge { .. } => 400,
            WitnessError::UnknownLog(_) => 404,
            WitnessError::NotSigned => 403,
            WitnessError::Conflict(_) => 409,
            WitnessError::Inconsistent(_) => 422,
            _ => 400,
        }
    }
}

/// What a witness knows of one log: the latest checkpoint it cosigned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Witnessed {
    pub size: u64,
    pub root: Hash,
}

/// The witness's decision on a request for a log it follows (`vkey`,
/// `origin`), given what it cosigned last: the new state to persist and
/// the note text to cosign.
pub fn check_add(
    req: &AddCheckpoint,
    origin: &str,
    vkey: &str,
    last: Option<Witnessed>,
) -> Result<(Witnessed, Vec<u8>), WitnessError> {
    let cp = super::checkpoint::verify(&req.checkpoint, vkey, origin).map_err(|e| match e {
        super::checkpoint::CheckpointError::WrongOrigin { found, .. } => {
            WitnessError::UnknownLog(found)
        }
        super::checkpoint::CheckpointError::NotANote(m) => WitnessError::BadRequest(m),
        super::checkpoint::CheckpointError::NotACheckpoint => {
            WitnessError::BadRequest("the note is not a checkpoint".into())
        }
        _ => WitnessError::NotSigned,
    })?;
    if req.old_size > cp.size {
        return Err(WitnessError::OldTooLarge {
            old: req.old_size,
            size: cp.size,
        });
    }
    let known = last.map_or(0, |w| w.size);
    if req.old_size != known {
        return Err(WitnessError::Conflict(known));
    }
    if cp.size == 0 && cp.root != super::tree::empty_root() {
        return Err(WitnessError::Inconsistent(
            "an empty tree with another root".into(),
        ));
    }
    match last {
        // Never cosigned, or cosigned only the empty tree: consistent with
        // anything, so no proof.
        None | Some(Witnessed { size: 0, .. }) => {
            if !req.proof.is_empty() {
                return Err(WitnessError::Inconsistent(
                    "a proof from the empty tree".into(),
                ));
            }
        }
        Some(w) if w.size == cp.size => {
            if w.root != cp.root {
                return Err(WitnessError::Inconsistent(
                    "the same size with another root".into(),
                ));
            }
            if !req.proof.is_empty() {
                return Err(WitnessError::Inconsistent(
                    "a proof between equal sizes".into(),
                ));
            }
        }
        Some(w) => {
            tlog_tiles::check_tree(&req.proof, cp.size, cp.root, w.size, w.root)
                .map_err(|_| WitnessError::Inconsistent("the consistency proof fails".into()))?;
        }
    }
    let text = Note::from_bytes(&req.checkpoint)
        .map_err(|e| WitnessError::BadRequest(e.to_string()))?
        .text()
        .to_vec();
    // Only the first three lines are vouched for; a checkpoint with
    // extension lines is still a checkpoint (tlog-cosignature).
    let _ = Checkpoint::from_bytes(&text)
        .map_err(|_| WitnessError::BadRequest("no checkpoint".into()))?;
    Ok((
        Witnessed {
            size: cp.size,
            root: cp.root,
        },
        text,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::checkpoint::LogKey;
    use crate::tlog::tree::{self, Hashes};

    const ORIGIN: &str = "cache.example.org/main/tlog";

    fn tree_of(n: usize) -> (Vec<(u64, Hash)>, Hash) {
        let entries: Vec<Vec<u8>> = (0..n).map(|i| format!("e{i}").into_bytes()).collect();
        let out = tree::append(0, &entries, Hashes::default()).unwrap();
        (out.stored, out.root)
    }

    #[test]
    fn a_witness_cosigns_consistent_checkpoints_only() {
        let log = LogKey::new(ORIGIN, SigningKey::from_bytes(&[1; 32])).unwrap();
        let vkey = log.verifier_key();
        let (_, root5) = tree_of(5);
        let (stored8, root8) = tree_of(8);
        let first = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: log.sign(5, root5),
        };
        let (w5, text) = check_add(&first, ORIGIN, &vkey, None).unwrap();
        assert_eq!(w5.size, 5);
        assert!(text.ends_with(b"\n"));
        // A wrong old size: 409 with the witness's size.
        let stale = AddCheckpoint {
            old_size: 0,
            ..first.clone()
        };
        assert_eq!(
            check_add(&stale, ORIGIN, &vkey, Some(w5)),
            Err(WitnessError::Conflict(5))
        );
        // 5 -> 8 with the right proof; a forged proof is 422.
        let hashes = Hashes::new(stored8);
        let proof = tree::prove_consistency(8, 5, &hashes).unwrap();
        let next = AddCheckpoint {
            old_size: 5,
            proof: proof.clone(),
            checkpoint: log.sign(8, root8),
        };
        assert_eq!(check_add(&next, ORIGIN, &vkey, Some(w5)).unwrap().0.size, 8);
        let mut forged = next.clone();
        forged.proof[0].0[0] ^= 1;
        assert_eq!(
            check_add(&forged, ORIGIN, &vkey, Some(w5))
                .unwrap_err()
                .status(),
            422
        );
        // A fork at the same size, another log's checkpoint, another key.
        let fork = AddCheckpoint {
            old_size: 5,
            proof: vec![],
            checkpoint: log.sign(5, root8),
        };
        assert_eq!(
            check_add(&fork, ORIGIN, &vkey, Some(w5))
                .unwrap_err()
                .status(),
            422
        );
        let other = LogKey::new(ORIGIN, SigningKey::from_bytes(&[2; 32])).unwrap();
        let unsigned = AddCheckpoint {
            checkpoint: other.sign(5, root5),
            ..first.clone()
        };
        assert_eq!(
            check_add(&unsigned, ORIGIN, &vkey, None),
            Err(WitnessError::NotSigned)
        );
        assert_eq!(
            check_add(&first, "cache.example.org/other/tlog", &vkey, None)
                .unwrap_err()
                .status(),
            404
        );
        // After cosigning the empty tree, the next checkpoint needs no proof.
        let empty = tree::root(0, &Hashes::default()).unwrap();
        let zero = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: log.sign(0, empty),
        };
        let (w0, _) = check_add(&zero, ORIGIN, &vkey, None).unwrap();
        assert_eq!(
            check_add(&first, ORIGIN, &vkey, Some(w0)).unwrap().0.size,
            5
        );
        // The same checkpoint again: no proof may come with it.
        let again = AddCheckpoint {
            old_size: 5,
            proof: vec![Hash([1; 32])],
            checkpoint: first.checkpoint.clone(),
        };
        assert_eq!(
            check_add(&again, ORIGIN, &vkey, Some(w5))
                .unwrap_err()
                .status(),
            422
        );
        let backwards = AddCheckpoint {
            old_size: 9,
            ..next.clone()
        };
        assert_eq!(
            check_add(&backwards, ORIGIN, &vkey, Some(w5))
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn requests_round_trip_and_malformed_ones_are_refused() {
        let log = LogKey::new(ORIGIN, SigningKey::from_bytes(&[1; 32])).unwrap();
        let req = AddCheckpoint {
            old_size: 20852014,
            proof: vec![Hash([3; 32]), Hash([4; 32])],
            checkpoint: log.sign(20852163, Hash([5; 32])),
        };
        let body = req.encode();
        assert!(body.starts_with(b"old 20852014\nAwMD"));
        assert_eq!(AddCheckpoint::parse(&body).unwrap(), req);
        for bad in [
            &b"old 01\n\ncp"[..],
            b"old \n\ncp",
            b"new 1\n\ncp",
            b"old 1\nnot base64!\n\ncp",
            b"old 1\nAAAA\n\ncp",
            b"old 1",
            b"\xff",
        ] {
            assert!(AddCheckpoint::parse(bad).is_err(), "{bad:?}");
        }
        let many = format!(
            "old 1\n{}\ncp",
            format!("{}\n", b64().encode([0u8; 32])).repeat(64)
        );
        assert!(AddCheckpoint::parse(many.as_bytes()).is_err());
    }

    #[test]
    fn cosignatures_verify_with_the_witness_key_and_count_toward_a_quorum() {
        let log = LogKey::new(ORIGIN, SigningKey::from_bytes(&[1; 32])).unwrap();
        let note = log.sign(5, Hash([9; 32]));
        let text = Note::from_bytes(&note).unwrap().text().to_vec();
        let w1 = Cosigner::new("witness.example/w1", SigningKey::from_bytes(&[11; 32])).unwrap();
        let w2 = Cosigner::new("witness.example/w2", SigningKey::from_bytes(&[12; 32])).unwrap();
        let mut cosigned = note.clone();
        cosigned.extend_from_slice(w1.cosign(&text, 1_679_315_147).as_bytes());
        let keys = vec![w1.verifier_key(), w2.verifier_key()];
        assert_eq!(count_cosignatures(&cosigned, &keys).unwrap(), 1);
        cosigned.extend_from_slice(w2.cosign(&text, 1_679_315_148).as_bytes());
        assert_eq!(count_cosignatures(&cosigned, &keys).unwrap(), 2);
        assert_eq!(count_cosignatures(&note, &keys).unwrap(), 0);
        // w2's line moved onto another checkpoint does not verify.
        let other = log.sign(6, Hash([9; 32]));
        let mut moved = other.clone();
        moved.extend_from_slice(w2.cosign(&text, 1).as_bytes());
        assert!(count_cosignatures(&moved, &keys).is_err());
        assert!(w1.verifier_key().starts_with("witness.example/w1+"));
        assert!(
            CosignatureVerifier::new(&log.verifier_key()).is_err(),
            "a 0x01 key is not a cosigner's"
        );
        // A zero or far-future time is no cosignature.
        for time in [0, u64::MAX / 2] {
            let mut stamped = note.clone();
            stamped.extend_from_slice(w1.cosign(&text, time).as_bytes());
            let got = count_cosignatures(&stamped, &keys);
            assert!(got.is_err(), "time {time}: {got:?}");
        }
    }
}
