//! Uploads through Nix's own HTTP binary cache protocol (`nix copy --to
//! http://...`): the NAR file's name, the narinfo PUT after it, and which
//! registered Nix key signed that narinfo. The narinfo text as received is
//! the upload's signed statement; [`verify_statement`] is what a verifier
//! checks offline.

use thiserror::Error;

use crate::hash::NarHash;
use crate::narinfo::{NarInfo, NarInfoError};
use crate::signing::PublicKey;
use crate::store_path::StorePath;
use crate::upload::MAX_REFERENCES;

/// How a NAR file Nix uploads is compressed (`?compression=` of the store
/// URL; Nix's default is xz). bzip2 and brotli are refused: no one picks
/// them for a cache, and each would be a decoder more to trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileCompression {
    None,
    Xz,
    Zstd,
}

impl FileCompression {
    /// The narinfo `Compression:` value.
    pub fn as_str(self) -> &'static str {
        match self {
            FileCompression::None => "none",
            FileCompression::Xz => "xz",
            FileCompression::Zstd => "zstd",
        }
    }
}

/// `nar/<name>`'s name as Nix makes it: the SHA-256 of the file in
/// nixbase32, `.nar`, and the compression's extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarFileName {
    pub file_hash: NarHash,
    pub compression: FileCompression,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NixCopyError {
    #[error(
        "{0:?} is not a NAR file name Nix makes (<nixbase32 SHA-256>.nar, .nar.xz or .nar.zst)"
    )]
    FileName(String),
    #[error("NAR files compressed with {0} are not accepted: use ?compression=zstd (or xz, or none) in the store URL")]
    Compression(String),
    #[error("{0}")]
    NarInfo(#[from] NarInfoError),
    #[error("StorePath: {0}")]
    StorePath(String),
    #[error("the narinfo is for {found}, not for the {wanted}.narinfo it was PUT as")]
    OtherPath { found: String, wanted: String },
    #[error("URL {0:?} is not nar/ and a NAR file name")]
    Url(String),
    #[error("Compression: {field} but the file {file} is compressed with {from_name}")]
    CompressionField {
        field: String,
        file: String,
        from_name: &'static str,
    },
    #[error("FileHash {field} is not the SHA-256 the file's name gives ({from_name})")]
    FileHash { field: String, from_name: String },
    #[error("reference {0:?} is not a store path base name")]
    Reference(String),
    #[error("too many references ({0}; at most {MAX_REFERENCES})")]
    TooManyReferences(usize),
    #[error("Deriver {0:?} is not a store path base name")]
    Deriver(String),
    #[error("the CA field is not a content address (fixed:... or text:...)")]
    Ca,
    #[error("a NAR is at least 8 bytes; NarSize {0} cannot be right")]
    NarSize(u64),
}

/// Parses the `{file}` of `PUT /{cache}/nar/{file}`.
pub fn parse_nar_file_name(file: &str) -> Result<NarFileName, NixCopyError> {
    let bad = || NixCopyError::FileName(file.chars().take(120).collect());
    let (hash, ext) = file.split_once('.').ok_or_else(bad)?;
    let compression = match ext {
        "nar" => FileCompression::None,
        "nar.xz" => FileCompression::Xz,
        "nar.zst" => FileCompression::Zstd,
        "nar.bz2" | "nar.br" | "nar.lz4" | "nar.gz" => {
            return Err(NixCopyError::Compression(ext[4..].to_string()))
        }
        _ => return Err(bad()),
    };
    if hash.len() != 52 {
        return Err(bad());
    }
    let file_hash = NarHash::parse(&format!("sha256:{hash}")).map_err(|_| bad())?;
    Ok(NarFileName {
        file_hash,
        compression,
    })
}

/// A narinfo PUT, checked: every field well-formed, for the path it was PUT
/// as, naming a NAR file by Nix's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NixCopyUpload {
    pub info: NarInfo,
    pub store_path: StorePath,
    /// The NAR file the narinfo's URL names (`nar/<file>`).
    pub file: String,
    pub file_name: NarFileName,
    /// Base names, sorted and deduplicated.
    pub references: Vec<String>,
}

/// Checks the body of `PUT /{cache}/{hash_part}.narinfo` for a cache whose
/// store is `store_dir`. Signatures are checked by [`signed_by`].
pub fn check_narinfo(
    text: &str,
    store_dir: &str,
    hash_part: &str,
) -> Result<NixCopyUpload, NixCopyError> {
    let info = NarInfo::parse(text)?;
    let store_path = StorePath::parse(store_dir, &info.store_path)
        .map_err(|e| NixCopyError::StorePath(e.to_string()))?;
    if store_path.hash_part() != hash_part {
        return Err(NixCopyError::OtherPath {
            found: info.store_path.clone(),
            wanted: hash_part.chars().take(64).collect(),
        });
    }
    let file = info
        .url
        .strip_prefix("nar/")
        .filter(|f| !f.contains('/'))
        .ok_or_else(|| NixCopyError::Url(info.url.chars().take(120).collect()))?
        .to_string();
    let file_name = parse_nar_file_name(&file)?;
    if info.compression != file_name.compression.as_str() {
        return Err(NixCopyError::CompressionField {
            field: info.compression.chars().take(20).collect(),
            file,
            from_name: file_name.compression.as_str(),
        });
    }
    if let Some(field) = &info.file_hash {
        if NarHash::parse(field).ok() != Some(file_name.file_hash) {
            return Err(NixCopyError::FileHash {
                field: field.chars().take(80).collect(),
                from_name: file_name.file_hash.to_nix_string(),
            });
        }
    }
    if info.references.len() > MAX_REFERENCES {
        return Err(NixCopyError::TooManyReferences(info.references.len()));
    }
    let mut references = info
        .references
        .iter()
        .map(|r| {
            StorePath::from_base_name(r)
                .map(|p| p.base_name())
                .map_err(|_| NixCopyError::Reference(r.chars().take(120).collect()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    references.sort();
    references.dedup();
    if let Some(d) = &info.deriver {
        StorePath::from_base_name(d)
            .map_err(|_| NixCopyError::Deriver(d.chars().take(120).collect()))?;
    }
    if let Some(ca) = &info.ca {
        let ok = (ca.starts_with("fixed:") || ca.starts_with("text:"))
            && ca.len() < 200
            && ca.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(NixCopyError::Ca);
        }
    }
    if info.nar_size < 8 {
        return Err(NixCopyError::NarSize(info.nar_size));
    }
    Ok(NixCopyUpload {
        info,
        store_path,
        file,
        file_name,
        references,
    })
}

/// The first of `registered` whose key made one of the narinfo's `Sig:`
/// lines over its fingerprint, with that line.
pub fn signed_by<'a, T>(
    upload: &NixCopyUpload,
    store_dir: &str,
    registered: &'a [(T, PublicKey)],
) -> Option<(&'a T, String)> {
    let fingerprint = upload.info.fingerprint(store_dir);
    registered.iter().find_map(|(row, key)| {
        upload
            .info
            .sigs
            .iter()
            .find(|sig| key.verify(fingerprint.as_bytes(), sig))
            .map(|sig| (row, sig.clone()))
    })
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StatementError {
    #[error("the statement is not a narinfo: {0}")]
    NotANarInfo(NarInfoError),
    #[error("the narinfo's StorePath is not in a store directory")]
    StorePath,
    #[error("the logged key is not a Nix public key")]
    BadKey,
    #[error("the narinfo's signature does not verify with the logged Nix key")]
    BadSignature,
}

/// What a verifier checks of a `nix copy` upload's record: `statement` is
/// the narinfo as the server received it, `signature` the `Sig:` value it
/// recorded, `nix_key` the registered key (`NAME:BASE64`). Returns the
/// narinfo's store path.
pub fn verify_statement(
    statement: &[u8],
    signature: &str,
    nix_key: &str,
) -> Result<String, StatementError> {
    let text = String::from_utf8_lossy(statement);
    let info = NarInfo::parse(&text).map_err(StatementError::NotANarInfo)?;
    let store_dir = info
        .store_path
        .rsplit_once('/')
        .map(|(dir, _)| dir)
        .filter(|d| !d.is_empty())
        .ok_or(StatementError::StorePath)?;
    let key = PublicKey::parse(nix_key).map_err(|_| StatementError::BadKey)?;
    let fingerprint = info.fingerprint(store_dir);
    // The recorded signature must be one of the narinfo's own lines.
    if !info.sigs.iter().any(|s| s == signature) || !key.verify(fingerprint.as_bytes(), signature) {
        return Err(StatementError::BadSignature);
    }
    Ok(info.store_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::SecretKey;

    const STORE: &str = "/nix/store";
    const HASH: &str = "g7yx0xf9rzamh5jdhd4rnmqdrcrs17zf";
    const FILE: &str = "1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3.nar.xz";

    fn narinfo(extra: &str) -> String {
        format!(
            "StorePath: /nix/store/{HASH}-tree\n\
             URL: nar/{FILE}\n\
             Compression: xz\n\
             FileHash: sha256:1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3\n\
             FileSize: 100\n\
             NarHash: sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73\n\
             NarSize: 120\n\
             References: {HASH}-tree 0mdqa9w1p6cmli6976v4wi0sw9r4p5pr-dep\n\
             {extra}"
        )
    }

    fn signed(key: &SecretKey) -> String {
        let mut info = NarInfo::parse(&narinfo("")).unwrap();
        info.sign(STORE, key);
        info.render()
    }

    #[test]
    fn file_names_are_nix_s() {
        let n = parse_nar_file_name(FILE).unwrap();
        assert_eq!(n.compression, FileCompression::Xz);
        assert_eq!(
            n.file_hash.to_nixbase32(),
            "1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3"
        );
        let base = &FILE[..52];
        assert_eq!(
            parse_nar_file_name(&format!("{base}.nar.zst"))
                .unwrap()
                .compression,
            FileCompression::Zstd
        );
        assert_eq!(
            parse_nar_file_name(&format!("{base}.nar"))
                .unwrap()
                .compression,
            FileCompression::None
        );
        assert_eq!(
            parse_nar_file_name(&format!("{base}.nar.bz2")),
            Err(NixCopyError::Compression("bz2".into()))
        );
        for bad in [
            "x.nar",
            "",
            ".nar",
            &format!("{base}.narinfo"),
            &format!("{base}.nar.xz.xz"),
            // 'e' is not a nixbase32 letter.
            &format!("{}e.nar", &base[..51]),
            "../../etc/passwd",
        ] {
            assert!(
                matches!(parse_nar_file_name(bad), Err(NixCopyError::FileName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_narinfo_is_checked_field_by_field() {
        let ok = check_narinfo(&narinfo(""), STORE, HASH).unwrap();
        assert_eq!(ok.file, FILE);
        assert_eq!(ok.references.len(), 2);
        type Expect = fn(&NixCopyError) -> bool;
        let cases: Vec<(String, Expect)> = vec![
            (narinfo(""), |e| matches!(e, NixCopyError::OtherPath { .. })),
            (narinfo("").replace("URL: nar/", "URL: ../"), |e| {
                matches!(e, NixCopyError::Url(_))
            }),
            (
                narinfo("").replace("Compression: xz", "Compression: zstd"),
                |e| matches!(e, NixCopyError::CompressionField { .. }),
            ),
            (
                narinfo("").replace("FileHash: sha256:1w1f", "FileHash: sha256:0w1f"),
                |e| matches!(e, NixCopyError::FileHash { .. }),
            ),
            (narinfo("").replace("-dep", "-d/p"), |e| {
                matches!(e, NixCopyError::Reference(_))
            }),
            (narinfo("Deriver: nope\n"), |e| {
                matches!(e, NixCopyError::Deriver(_))
            }),
            (narinfo("CA: sha256:abc\n"), |e| {
                matches!(e, NixCopyError::Ca)
            }),
            (narinfo("").replace("NarSize: 120", "NarSize: 7"), |e| {
                matches!(e, NixCopyError::NarSize(7))
            }),
            (
                narinfo("").replace("StorePath: /nix/store", "StorePath: /gnu/store"),
                |e| matches!(e, NixCopyError::StorePath(_)),
            ),
            ("StorePath /x\n".into(), |e| {
                matches!(e, NixCopyError::NarInfo(_))
            }),
        ];
        for (i, (text, want)) in cases.iter().enumerate() {
            let hash = if i == 0 {
                "00000000000000000000000000000000"
            } else {
                HASH
            };
            let got = check_narinfo(text, STORE, hash).unwrap_err();
            assert!(want(&got), "case {i}: {got}");
        }
    }

    #[test]
    fn only_a_registered_key_s_signature_counts() {
        let alice = SecretKey::generate("alice-1").unwrap();
        let mallory = SecretKey::generate("alice-1").unwrap();
        let registered = vec![("alice", alice.public())];
        let by_alice = check_narinfo(&signed(&alice), STORE, HASH).unwrap();
        let (who, sig) = signed_by(&by_alice, STORE, &registered).unwrap();
        assert_eq!(*who, "alice");
        assert!(sig.starts_with("alice-1:"));
        // Same key name, another key: not alice's signature.
        let by_mallory = check_narinfo(&signed(&mallory), STORE, HASH).unwrap();
        assert_eq!(signed_by(&by_mallory, STORE, &registered), None);
        // Alice's signature over other contents (NarHash changed after signing).
        let edited = signed(&alice).replace("NarSize: 120", "NarSize: 121");
        let edited = check_narinfo(&edited, STORE, HASH).unwrap();
        assert_eq!(signed_by(&edited, STORE, &registered), None);
        let unsigned = check_narinfo(&narinfo(""), STORE, HASH).unwrap();
        assert_eq!(signed_by(&unsigned, STORE, &registered), None);
    }

    #[test]
    fn a_recorded_statement_verifies_offline() {
        let alice = SecretKey::generate("alice-1").unwrap();
        let text = signed(&alice);
        let sig = NarInfo::parse(&text).unwrap().sigs[0].clone();
        let key = alice.public().to_nix_string();
        assert_eq!(
            verify_statement(text.as_bytes(), &sig, &key).unwrap(),
            format!("/nix/store/{HASH}-tree")
        );
        let other = SecretKey::generate("alice-1")
            .unwrap()
            .public()
            .to_nix_string();
        assert_eq!(
            verify_statement(text.as_bytes(), &sig, &other),
            Err(StatementError::BadSignature)
        );
        let edited = text.replace("NarSize: 120", "NarSize: 121");
        assert_eq!(
            verify_statement(edited.as_bytes(), &sig, &key),
            Err(StatementError::BadSignature)
        );
        // A signature the narinfo does not carry is not the record's.
        let stray = alice.sign(b"something else");
        assert_eq!(
            verify_statement(text.as_bytes(), &stray, &key),
            Err(StatementError::BadSignature)
        );
        assert_eq!(
            verify_statement(text.as_bytes(), &sig, "nonsense"),
            Err(StatementError::BadKey)
        );
    }
}
