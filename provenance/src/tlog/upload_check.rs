//! What an upload's two log entries prove together, checked the same way
//! online (`provenix verify CACHE PATH`) and offline (`--offline FILE`):
//! the upload entry holds the statement, the key entry certifies the key
//! that signed it, the key was logged first, and the signature verifies
//! with the logged public key.

use thiserror::Error;

use super::entry::Entry;
use crate::exchange;

/// An upload the log vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedUpload {
    pub store_path: String,
    pub key_id: String,
    /// Who the key was certified for, as its entry says.
    pub subject: String,
    /// The key's certificate (PEM), to be chained to the cache's CA
    /// (empty for a registered Nix key).
    pub certificate: Vec<u8>,
    /// The key is a Nix key an admin registered (`nix copy --to`
    /// uploads), not one the CA certified: there is no certificate.
    pub nix_key: bool,
}

/// `key_kind` of a registered Nix key's entry.
pub const NIX_KEY_KIND: &str = "nix-key";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UploadCheckError {
    #[error("log entry {0} is not an upload")]
    NotAnUpload(u64),
    #[error("log entry {0} does not hold this statement")]
    OtherStatement(u64),
    #[error("log entry {0} is not the key that signed the upload")]
    OtherKey(u64),
    #[error("the key was logged (entry {key}) after the upload (entry {upload})")]
    KeyAfterUpload { key: u64, upload: u64 },
    #[error("the logged key's public key does not parse")]
    BadPublicKey,
    #[error("the statement's signature does not verify with the logged key")]
    BadSignature,
    #[error("the key's entry {0} names no logged CA certificate")]
    NoCaNamed(u64),
    #[error("the key's entry names CA entry {named}, not entry {given}")]
    OtherCa { named: u64, given: u64 },
    #[error("log entry {0} is not a CA certificate")]
    NotACa(u64),
    #[error("the CA was logged (entry {ca}) after the key (entry {key})")]
    CaAfterKey { ca: u64, key: u64 },
    #[error("CA entry {0} does not hold the certificate its hash names")]
    CaBodyMismatch(u64),
}

fn text<'a>(e: &'a Entry, k: &str) -> &'a str {
    e.header
        .asserted
        .get(k)
        .and_then(|v| v.as_str())
        .unwrap_or("")
}

/// Checks upload entry `upload` (at `upload_index`) against the statement
/// the record says was signed, and key entry `key` (at `key_index`).
/// `statement` is the upload entry's body unless it was too large for the
/// entry, in which case the entry binds it by hash.
pub fn check_upload(
    (upload_index, upload): (u64, &Entry),
    (key_index, key): (u64, &Entry),
    statement: &[u8],
) -> Result<CheckedUpload, UploadCheckError> {
    use UploadCheckError::*;
    if upload.header.kind != "upload" {
        return Err(NotAnUpload(upload_index));
    }
    if !upload.binds(statement) {
        return Err(OtherStatement(upload_index));
    }
    let key_id = text(upload, "key_id");
    if key.header.kind != "upload-key" || text(key, "key_id") != key_id || key_id.is_empty() {
        return Err(OtherKey(key_index));
    }
    if key_index >= upload_index {
        return Err(KeyAfterUpload {
            key: key_index,
            upload: upload_index,
        });
    }
    let nix_key = text(key, "key_kind") == NIX_KEY_KIND;
    if nix_key {
        // A `nix copy --to` upload: the statement is the narinfo, signed
        // by the uploader's registered Nix key.
        let signed_path = crate::nix_copy::verify_statement(
            statement,
            text(upload, "signature"),
            text(key, "public_key"),
        )
        .map_err(|e| match e {
            crate::nix_copy::StatementError::BadKey => BadPublicKey,
            _ => BadSignature,
        })?;
        if signed_path != text(upload, "store_path") {
            return Err(BadSignature);
        }
    } else {
        let public_key =
            exchange::decode_public_key(text(key, "public_key")).map_err(|_| BadPublicKey)?;
        exchange::verify(&public_key, statement, text(upload, "signature"))
            .map_err(|_| BadSignature)?;
    }
    Ok(CheckedUpload {
        store_path: text(upload, "store_path").to_string(),
        key_id: key_id.to_string(),
        subject: text(key, "subject").to_string(),
        certificate: key.body.clone(),
        nix_key,
    })
}

/// The index of the CA entry key entry `key` names (`ca_index`), if any.
pub fn named_ca(key: &Entry) -> Option<u64> {
    key.header.asserted.get("ca_index").and_then(|v| v.as_u64())
}

/// Checks that `ca` (at `ca_index`) is the CA entry key entry `key` (at
/// `key_index`) names, logged before it, holding the certificate its hash
/// names; the key's certificate is then chained to `ca.body`
/// (`certificate_chain::check_chain`).
pub fn check_key_ca(
    (key_index, key): (u64, &Entry),
    (ca_index, ca): (u64, &Entry),
) -> Result<(), UploadCheckError> {
    use sha2::{Digest, Sha256};
    use UploadCheckError::*;
    let named = named_ca(key).ok_or(NoCaNamed(key_index))?;
    if named != ca_index {
        return Err(OtherCa {
            named,
            given: ca_index,
        });
    }
    if ca.header.kind != "ca-certificate" {
        return Err(NotACa(ca_index));
    }
    if ca_index >= key_index {
        return Err(CaAfterKey {
            ca: ca_index,
            key: key_index,
        });
    }
    if text(ca, "sha256") != hex::encode(Sha256::digest(&ca.body)) {
        return Err(CaBodyMismatch(ca_index));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::entry::EntryHeader;
    use base64::Engine;
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::{json, Value};

    fn entry(kind: &str, asserted: Value, body: &[u8]) -> Entry {
        Entry::new(
            EntryHeader {
                kind: kind.into(),
                cache: "main".into(),
                time: 1,
                asserted: asserted
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                body_sha256: None,
                asserted_sha256: None,
            },
            body.to_vec(),
        )
    }

    #[test]
    fn an_upload_checks_against_its_key_and_tampering_does_not() {
        let sk = SigningKey::from_bytes(&[3; 32]);
        let b64 = base64::engine::general_purpose::STANDARD;
        let public = exchange::encode_public_key(&sk.verifying_key());
        let statement = b"provenix-upload-v1\nstore_path /nix/store/x-a\n".to_vec();
        let signature = b64.encode(sk.sign(&statement).to_bytes());
        let key = entry(
            "upload-key",
            json!({"key_id": "k1", "public_key": public, "subject": "repo:acme/app"}),
            b"-----BEGIN CERTIFICATE-----",
        );
        let upload = entry(
            "upload",
            json!({"key_id": "k1", "signature": signature, "store_path": "/nix/store/x-a"}),
            &statement,
        );
        let checked = check_upload((5, &upload), (2, &key), &statement).unwrap();
        assert_eq!(checked.subject, "repo:acme/app");
        assert_eq!(checked.store_path, "/nix/store/x-a");

        let other_key = entry(
            "upload-key",
            json!({"key_id": "k1", "public_key": exchange::encode_public_key(&SigningKey::from_bytes(&[4; 32]).verifying_key())}),
            b"",
        );
        let renamed = entry(
            "upload-key",
            json!({"key_id": "k2", "public_key": public}),
            b"",
        );
        use UploadCheckError::*;
        for (u, k, st, want) in [
            ((5, &upload), (2, &key), &b"other"[..], OtherStatement(5)),
            ((5, &key), (2, &key), &statement[..], NotAnUpload(5)),
            ((5, &upload), (2, &renamed), &statement[..], OtherKey(2)),
            ((5, &upload), (2, &upload), &statement[..], OtherKey(2)),
            (
                (5, &upload),
                (6, &key),
                &statement[..],
                KeyAfterUpload { key: 6, upload: 5 },
            ),
            ((5, &upload), (2, &other_key), &statement[..], BadSignature),
        ] {
            assert_eq!(check_upload(u, k, st).unwrap_err(), want);
        }
    }

    #[test]
    fn a_key_checks_against_the_ca_entry_it_names_logged_before_it() {
        use sha2::{Digest, Sha256};
        let pem = b"-----BEGIN CERTIFICATE-----\nCA\n".to_vec();
        let sha = hex::encode(Sha256::digest(&pem));
        let ca = entry("ca-certificate", json!({"sha256": sha}), &pem);
        let key = entry("upload-key", json!({"key_id": "k1", "ca_index": 1}), b"");
        check_key_ca((4, &key), (1, &ca)).unwrap();

        let unnamed = entry("upload-key", json!({"key_id": "k1"}), b"");
        let early = entry("upload-key", json!({"ca_index": 7}), b"");
        let edited = entry("ca-certificate", json!({"sha256": sha}), b"another CA");
        use UploadCheckError::*;
        for (k, c, want) in [
            ((4, &unnamed), (1, &ca), NoCaNamed(4)),
            ((4, &key), (2, &ca), OtherCa { named: 1, given: 2 }),
            ((4, &key), (1, &key), NotACa(1)),
            ((5, &early), (7, &ca), CaAfterKey { ca: 7, key: 5 }),
            ((4, &key), (1, &edited), CaBodyMismatch(1)),
        ] {
            assert_eq!(check_key_ca(k, c).unwrap_err(), want);
        }
    }

    #[test]
    fn a_nix_copy_upload_checks_against_its_registered_nix_key() {
        use crate::narinfo::NarInfo;
        use crate::signing::SecretKey;
        let key = SecretKey::generate("deploy-1").unwrap();
        let mut info = NarInfo::parse(
            "StorePath: /nix/store/g7yx0xf9rzamh5jdhd4rnmqdrcrs17zf-tree\n\
             URL: nar/x.nar\n\
             NarHash: sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73\n\
             NarSize: 120\n",
        )
        .unwrap();
        info.sign("/nix/store", &key);
        let statement = info.render();
        let signature = info.sigs[0].clone();
        let path = "/nix/store/g7yx0xf9rzamh5jdhd4rnmqdrcrs17zf-tree";
        let key_entry = |public: String| {
            entry(
                "upload-key",
                json!({"key_id": "nix-1", "key_kind": NIX_KEY_KIND, "public_key": public, "subject": "deploy-bot"}),
                b"",
            )
        };
        let registered = key_entry(key.public().to_nix_string());
        let upload = |store_path: &str| {
            entry(
                "upload",
                json!({"key_id": "nix-1", "signature": signature, "store_path": store_path}),
                statement.as_bytes(),
            )
        };
        let checked =
            check_upload((5, &upload(path)), (2, &registered), statement.as_bytes()).unwrap();
        assert!(checked.nix_key);
        assert_eq!(checked.subject, "deploy-bot");
        let other = key_entry(
            SecretKey::generate("deploy-1")
                .unwrap()
                .public()
                .to_nix_string(),
        );
        use UploadCheckError::*;
        for (u, k, want) in [
            (upload(path), other, BadSignature),
            // The entry names another path than the narinfo signed.
            (
                upload("/nix/store/00000000000000000000000000000000-x"),
                key_entry(key.public().to_nix_string()),
                BadSignature,
            ),
            (upload(path), key_entry("nonsense".into()), BadPublicKey),
        ] {
            assert_eq!(
                check_upload((5, &u), (2, &k), statement.as_bytes()).unwrap_err(),
                want
            );
        }
    }
}
