//! `NarInfo::parse` on arbitrary UTF-8 (narinfo text comes from upstream
//! caches and from the server to the client). What parses must survive
//! `render` and a second `parse` unchanged (NarInfo derives PartialEq), and
//! rendering is then a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provenix_provenance::NarInfo;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(info) = NarInfo::parse(text) else {
        return;
    };
    let rendered = info.render();
    let again = NarInfo::parse(&rendered)
        .unwrap_or_else(|e| panic!("rendered narinfo does not parse: {e}\n{rendered:?}"));
    assert_eq!(info, again, "narinfo does not round-trip\n{rendered:?}");
    assert_eq!(rendered, again.render());
});
