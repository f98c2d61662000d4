//! The body of `POST /_api/v1/closure-statements` and the signed text an
//! auditor reads back: JSON and text from untrusted hands. Must never
//! panic; a statement that validates has exactly one text, which parses
//! back to the same statement; any text that parses is canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provenix_provenance::closure::ClosureStatement;
use provenix_provenance::DEFAULT_STORE_DIR;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(read) = ClosureStatement::parse(text) {
            assert_eq!(read.statement(), text.as_bytes(), "parsed text is canonical");
        }
    }
    let Ok(st) = serde_json::from_slice::<ClosureStatement>(data) else {
        return;
    };
    if st.validate(DEFAULT_STORE_DIR).is_ok() {
        let text = String::from_utf8(st.statement()).expect("validated text is UTF-8");
        let mut read = ClosureStatement::parse(&text).expect("validated text reads back");
        read.signature = st.signature.clone();
        assert_eq!(read, st, "one text, one statement");
    }
});
