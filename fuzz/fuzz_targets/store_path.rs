//! Store paths, base names, hash parts and store directories from
//! arbitrary UTF-8. Input: `<store dir>\n<path>`, or just `<path>` under
//! /nix/store. What parses must print back to the very input and parse
//! again to an equal value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provenix_provenance::store_path::{self, StorePath, DEFAULT_STORE_DIR, HASH_LEN};

fn check_invariants(p: &StorePath) {
    store_path::validate_hash_part(p.hash_part()).expect("hash part of a parsed path validates");
    assert_eq!(p.hash_part().len(), HASH_LEN);
    let name = p.name();
    assert!(!name.is_empty() && !name.starts_with('.'));
    assert!(!name.contains('/') && !name.contains('\0'));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (store_dir, s) = text.split_once('\n').unwrap_or((DEFAULT_STORE_DIR, text));

    let _ = store_path::validate_store_dir(store_dir);
    let hash_ok = store_path::validate_hash_part(s).is_ok();
    if hash_ok {
        assert_eq!(s.len(), HASH_LEN);
    }

    if let Ok(p) = StorePath::from_base_name(s) {
        check_invariants(&p);
        assert_eq!(p.base_name(), s);
        assert_eq!(p.to_string(), s);
        let abs = p.to_absolute(DEFAULT_STORE_DIR);
        assert_eq!(StorePath::parse(DEFAULT_STORE_DIR, &abs), Ok(p));
    }

    if let Ok(p) = StorePath::parse(store_dir, s) {
        check_invariants(&p);
        let abs = p.to_absolute(store_dir);
        assert_eq!(abs, s, "to_absolute does not give back the parsed path");
        assert_eq!(StorePath::parse(store_dir, &abs).as_ref(), Ok(&p));
        assert_eq!(StorePath::from_base_name(&p.base_name()), Ok(p));
    }
});
