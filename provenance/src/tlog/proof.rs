//! Offline proofs that an entry is in a cache's log (c2sp.org/tlog-proof):
//! the entry's index, its inclusion proof, and the checkpoint with its
//! witnesses' cosignatures. provenix puts the entry itself in the `extra`
//! line, so a proof is all a verifier needs besides the trusted keys: the
//! leaf hash is the entry's, and the inclusion proof binds it to the root
//! the log (and its witnesses) signed.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of the entry>
//! index 7
//! <base64 hash>...
//!
//! <checkpoint, verbatim>
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use thiserror::Error;
use tlog_tiles::Hash;

use super::checkpoint::{self, VerifiedCheckpoint};
use super::witness;

pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// The most hashes an inclusion proof in a tree of 2^63 entries has.
const MAX_PROOF: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct TlogProof {
    /// The logged entry (provenix always sets it).
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    /// From the leaf's sibling up to the root's child.
    pub proof: Vec<Hash>,
    /// The checkpoint note with its cosignatures, verbatim.
    pub checkpoint: Vec<u8>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("not a tlog-proof: {0}")]
    Malformed(&'static str),
    #[error("the proof's checkpoint does not verify: {0}")]
    Checkpoint(String),
    #[error("the checkpoint has {have} of the {need} witness cosignatures required")]
    Quorum { have: usize, need: usize },
    #[error("a witness's cosignature does not verify: {0}")]
    Cosignature(String),
    #[error("entry {index} is not included in the checkpoint of {size} entries")]
    NotIncluded { index: u64, size: u64 },
    #[error("the proof carries no entry")]
    NoEntry,
}

impl TlogProof {
    pub fn encode(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            out.push_str(&B64.encode(h.0));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&String::from_utf8_lossy(&self.checkpoint));
        out
    }

    /// Reads a proof in its one spelling (no leading zeroes, standard
    /// base64, 32-byte hashes), refusing anything else.
    pub fn parse(text: &str) -> Result<TlogProof, ProofError> {
        use ProofError::Malformed;
        let rest = text
            .strip_prefix(HEADER)
            .and_then(|r| r.strip_prefix('\n'))
            .ok_or(Malformed("no c2sp.org/tlog-proof@v1 line"))?;
        let (head, checkpoint) = rest
            .split_once("\n\n")
            .ok_or(Malformed("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n').peekable();
        let extra = match lines.peek() {
            Some(l) if l.starts_with("extra ") => {
                let b = B64
                    .decode(&l["extra ".len()..])
                    .map_err(|_| Malformed("the extra line is not base64"))?;
                lines.next();
                Some(b)
            }
            _ => None,
        };
        let index = lines
            .next()
            .and_then(|l| l.strip_prefix("index "))
            .ok_or(Malformed("no index line"))?;
        if index.is_empty()
            || !index.bytes().all(|b| b.is_ascii_digit())
            || (index.len() > 1 && index.starts_with('0'))
        {
            return Err(Malformed(
                "the index is not a decimal without leading zeroes",
            ));
        }
        let index: u64 = index
            .parse()
            .map_err(|_| Malformed("the index is too large"))?;
        let mut proof = Vec::new();
        for l in lines {
            let b = B64
                .decode(l)
                .map_err(|_| Malformed("a proof line is not base64"))?;
            let h: [u8; 32] = b
                .try_into()
                .map_err(|_| Malformed("a proof line is not a SHA-256 hash"))?;
            proof.push(Hash(h));
            if proof.len() > MAX_PROOF {
                return Err(Malformed("the inclusion proof is too long"));
            }
        }
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint: checkpoint.as_bytes().to_vec(),
        })
    }

    /// Checks the proof with the keys the verifier trusts: the checkpoint
    /// signed by the log's key for `origin`, cosigned by `quorum` of
    /// `witnesses`, and the entry in `extra` included in its tree.
    /// Returns the checkpoint and the entry.
    pub fn verify(
        &self,
        verifier_key: &str,
        origin: &str,
        witnesses: &[String],
        quorum: usize,
    ) -> Result<(VerifiedCheckpoint, &[u8]), ProofError> {
        let entry = self.extra.as_deref().ok_or(ProofError::NoEntry)?;
        let cp = checkpoint::verify(&self.checkpoint, verifier_key, origin)
            .map_err(|e| ProofError::Checkpoint(e.to_string()))?;
        let have = witness::count_cosignatures(&self.checkpoint, witnesses)
            .map_err(|e| ProofError::Cosignature(e.to_string()))?;
        if have < quorum {
            return Err(ProofError::Quorum { have, need: quorum });
        }
        let not_included = ProofError::NotIncluded {
            index: self.index,
            size: cp.size,
        };
        if self.index >= cp.size {
            return Err(not_included);
        }
        tlog_tiles::check_record(
            &self.proof,
            cp.size,
            cp.root,
            self.index,
            tlog_tiles::record_hash(entry),
        )
        .map_err(|_| not_included)?;
        Ok((cp, entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::checkpoint::LogKey;
    use crate::tlog::tree::{self, Hashes};
    use crate::tlog::witness::Cosigner;
    use ed25519_dalek::SigningKey;

    const ORIGIN: &str = "cache.example.org/main/tlog";

    /// A log of `n` entries, its key, and the proof of entry `index` in a
    /// checkpoint cosigned by one witness.
    fn log(n: u64, index: u64) -> (TlogProof, String, String) {
        let key = LogKey::new(ORIGIN, SigningKey::from_bytes(&[7; 32])).unwrap();
        let entries: Vec<Vec<u8>> = (0..n).map(|i| format!("entry {i}").into_bytes()).collect();
        let appended = tree::append(0, &entries, Hashes::default()).unwrap();
        let hashes = Hashes::new(appended.stored);
        let proof = tree::prove_inclusion(n, index, &hashes).unwrap();
        let note = key.sign(n, appended.root);
        let witness = Cosigner::new("witness.example", SigningKey::from_bytes(&[9; 32])).unwrap();
        // The cosignature is over the note's text: up to its blank line.
        let text_end = note.windows(2).position(|w| w == b"\n\n").unwrap() + 1;
        let mut cosigned = note.clone();
        cosigned.extend_from_slice(witness.cosign(&note[..text_end], 1_790_000_000).as_bytes());
        (
            TlogProof {
                extra: Some(entries[index as usize].clone()),
                index,
                proof,
                checkpoint: cosigned,
            },
            key.verifier_key(),
            witness.verifier_key(),
        )
    }

    #[test]
    fn a_proof_round_trips_and_verifies() {
        for (n, index) in [(1, 0), (2, 1), (7, 3), (300, 257)] {
            let (p, vkey, wkey) = log(n, index);
            let text = p.encode();
            assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "));
            let back = TlogProof::parse(&text).unwrap();
            assert_eq!(back, p);
            let (cp, entry) = back
                .verify(&vkey, ORIGIN, std::slice::from_ref(&wkey), 1)
                .unwrap();
            assert_eq!(cp.size, n);
            assert_eq!(entry, format!("entry {index}").as_bytes());
        }
    }

    #[test]
    fn what_does_not_verify_is_refused() {
        let (p, vkey, wkey) = log(7, 3);
        let other = LogKey::new(ORIGIN, SigningKey::from_bytes(&[8; 32])).unwrap();
        let w = [wkey];
        let mut tampered_entry = p.clone();
        tampered_entry.extra = Some(b"entry 4".to_vec());
        let mut wrong_index = p.clone();
        wrong_index.index = 4;
        let mut beyond = p.clone();
        beyond.index = 7;
        let mut no_entry = p.clone();
        no_entry.extra = None;
        let mut short = p.clone();
        short.proof.pop();
        let not_included = |index| ProofError::NotIncluded { index, size: 7 };
        for (proof, key, origin, quorum, want) in [
            (&tampered_entry, &vkey, ORIGIN, 1, not_included(3)),
            (&wrong_index, &vkey, ORIGIN, 1, not_included(4)),
            (&beyond, &vkey, ORIGIN, 1, not_included(7)),
            (&short, &vkey, ORIGIN, 1, not_included(3)),
            (&no_entry, &vkey, ORIGIN, 1, ProofError::NoEntry),
            (
                &p,
                &vkey,
                ORIGIN,
                2,
                ProofError::Quorum { have: 1, need: 2 },
            ),
        ] {
            assert_eq!(proof.verify(key, origin, &w, quorum).unwrap_err(), want);
        }
        assert!(matches!(
            p.verify(&other.verifier_key(), ORIGIN, &w, 1),
            Err(ProofError::Checkpoint(_))
        ));
        assert!(matches!(
            p.verify(&vkey, "cache.example.org/other/tlog", &w, 1),
            Err(ProofError::Checkpoint(_))
        ));
    }

    #[test]
    fn malformed_proofs_are_refused() {
        let (p, _, _) = log(7, 3);
        let good = p.encode();
        for bad in [
            good.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
            good.replacen("index 3", "index 03", 1),
            good.replacen("index 3", "index -3", 1),
            good.replacen("index 3", "index", 1),
            good.replacen("\n\n", "\n", 1),
            good.replacen("index 3\n", "index 3\nAAAA\n", 1),
            good.replacen("index 3\n", "index 3\n!!!\n", 1),
            format!("{HEADER}\nindex 99999999999999999999\n\n"),
        ] {
            assert!(
                matches!(TlogProof::parse(&bad), Err(ProofError::Malformed(_))),
                "{bad:?}"
            );
        }
    }
}
