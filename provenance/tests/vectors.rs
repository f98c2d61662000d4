//! Vectors produced by Nix 2.8: `nix-store --dump` of a small tree, and
//! narinfo files written by `nix copy --to file://...?secret-key=...`.

use provenix_provenance::nar::{self, NarValidator};
use provenix_provenance::{NarHash, NarInfo, PublicKey, SecretKey, StorePath, DEFAULT_STORE_DIR};

const TREE_NAR: &[u8] = include_bytes!("vectors/tree.nar");
const IA_NAR: &[u8] = include_bytes!("vectors/ia-ref.nar");
const TREE_NARINFO: &str = include_str!("vectors/tree.narinfo");
const IA_NARINFO: &str = include_str!("vectors/ia-ref.narinfo");
const PUBKEY: &str = include_str!("vectors/test-1.pub");

#[test]
fn nix_nar_validates_and_hashes_to_its_narinfo() {
    for (nar_bytes, info) in [(TREE_NAR, TREE_NARINFO), (IA_NAR, IA_NARINFO)] {
        nar::validate(nar_bytes).unwrap();
        let info = NarInfo::parse(info).unwrap();
        assert_eq!(NarHash::of(nar_bytes), info.nar_hash);
        assert_eq!(nar_bytes.len() as u64, info.nar_size);
    }
}

#[test]
fn nix_nar_validates_byte_by_byte() {
    let mut v = NarValidator::new();
    for b in TREE_NAR {
        v.feed(std::slice::from_ref(b)).unwrap();
    }
    v.finish().unwrap();
}

#[test]
fn our_writer_reproduces_nix_dump() {
    use nar::Node;
    let tree = Node::Directory(vec![
        (
            "bin".into(),
            Node::Directory(vec![(
                "hello".into(),
                Node::Regular {
                    executable: true,
                    contents: b"#!/bin/sh\necho hello\n".to_vec(),
                },
            )]),
        ),
        (
            "data.txt".into(),
            Node::Regular {
                executable: false,
                contents: b"data\n".to_vec(),
            },
        ),
        (
            "link".into(),
            Node::Symlink {
                target: "bin/hello".into(),
            },
        ),
    ]);
    assert_eq!(nar::write(&tree), TREE_NAR);
}

#[test]
fn nix_signatures_verify_with_our_fingerprint() {
    let key = PublicKey::parse(PUBKEY).unwrap();
    for text in [TREE_NARINFO, IA_NARINFO] {
        let info = NarInfo::parse(text).unwrap();
        assert!(info.verify(DEFAULT_STORE_DIR, &key), "{}", info.store_path);
        let mut tampered = info.clone();
        tampered.nar_size += 1;
        assert!(!tampered.verify(DEFAULT_STORE_DIR, &key));
    }
    let ia = NarInfo::parse(IA_NARINFO).unwrap();
    assert_eq!(
        ia.references,
        vec!["g7yx0xf9rzamh5jdhd4rnmqdrcrs17zf-tree".to_string()]
    );
    StorePath::parse(DEFAULT_STORE_DIR, &ia.store_path).unwrap();
}

#[test]
fn our_signature_replaces_nix_and_verifies() {
    let sk = SecretKey::generate("provenix-test-1").unwrap();
    let mut info = NarInfo::parse(IA_NARINFO).unwrap();
    info.sigs.clear();
    info.sign(DEFAULT_STORE_DIR, &sk);
    let reparsed = NarInfo::parse(&info.render()).unwrap();
    assert_eq!(reparsed, info);
    assert!(reparsed.verify(DEFAULT_STORE_DIR, &sk.public()));
}
