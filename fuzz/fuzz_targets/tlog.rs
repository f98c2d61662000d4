//! The transparency log's parsers of untrusted bytes: tile paths (from any
//! caller of `GET /{cache}/tlog/tile/...`), entries and bundles (from a
//! server, read by clients), checkpoints (from a server). Must never panic
//! (`tlog_tiles` itself panics on some tile parameters, which the path
//! parser must keep from it); what parses is canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provenix_provenance::tlog::checkpoint;
use provenix_provenance::tlog::entry::Entry;
use provenix_provenance::tlog::tiles::{self, TilePath};

const ORIGIN: &str = "cache.example.org/main/tlog";

fn verifier_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        checkpoint::LogKey::new(ORIGIN, key).unwrap().verifier_key()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(tile) = TilePath::parse(text) {
            assert_eq!(tile.path(), text, "a parsed path is canonical");
            let _ = tile.check_in_tree(u64::MAX);
            let _ = tile.check_in_tree(70_000);
            let _ = tile.records();
        }
    }
    if let Ok(entry) = Entry::decode(data) {
        assert_eq!(entry.encode(), data, "a decoded entry is its one encoding");
    }
    if let Some(entries) = tiles::unbundle(data) {
        assert_eq!(tiles::bundle(&entries).as_deref(), Some(data));
    }
    let _ = checkpoint::verify(data, verifier_key(), ORIGIN);
});
