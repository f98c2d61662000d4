//! The `X-Provenix-Nar-Info` header of an upload: JSON from an untrusted
//! client, deserialised, validated and turned into the signed statement.
//! Must never panic; what deserialises must serialise back to an equal
//! value, and the statement must not depend on the order of references.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provenix_provenance::store_path::StorePath;
use provenix_provenance::upload::{UploadPathNarInfo, STATEMENT_PREFIX};
use provenix_provenance::DEFAULT_STORE_DIR;

fuzz_target!(|data: &[u8]| {
    let Ok(info) = serde_json::from_slice::<UploadPathNarInfo>(data) else {
        return;
    };
    if let Ok(valid) = info.validate(DEFAULT_STORE_DIR) {
        assert_eq!(
            valid.store_path.to_absolute(DEFAULT_STORE_DIR),
            info.store_path
        );
        assert!(valid.references.windows(2).all(|w| w[0] < w[1]));
        for r in &valid.references {
            StorePath::from_base_name(r).expect("validated reference is a base name");
        }
        if let Some(d) = &valid.deriver {
            StorePath::from_base_name(d).expect("validated deriver is a base name");
        }
    }

    let statement = info.statement();
    let json = statement
        .strip_prefix(STATEMENT_PREFIX.as_bytes())
        .expect("statement starts with its prefix");
    let _: serde_json::Value = serde_json::from_slice(json).expect("statement is JSON");

    let mut reordered = info.clone();
    reordered.references.reverse();
    assert_eq!(reordered.statement(), statement);

    let wire = serde_json::to_vec(&info).expect("serialises");
    let back: UploadPathNarInfo = serde_json::from_slice(&wire).expect("own output deserialises");
    assert_eq!(back, info);
});
