//! `nar::NarValidator` fed arbitrary bytes in arbitrary pieces.
//!
//! Input: byte 0 is a count `k` (mod 16) of piece sizes, the next `k` bytes
//! are the sizes (cycled; 0 feeds an empty slice, then one byte), the rest is
//! the NAR. The server feeds upload bytes in whatever pieces the network
//! delivers and stops at the first error, so the verdict (and the error,
//! offset included) must not depend on how the bytes were split: the chunked
//! result must equal `nar::validate` on the whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provenix_provenance::nar::{self, NarValidator};

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = (k % 16) as usize;
    if rest.len() < k {
        return;
    }
    let (sizes, nar_bytes) = rest.split_at(k);

    let whole = nar::validate(nar_bytes);

    let mut v = NarValidator::new();
    let mut pos = 0;
    let mut i = 0;
    let mut chunked = Ok(());
    while pos < nar_bytes.len() {
        let mut size = if sizes.is_empty() {
            nar_bytes.len()
        } else {
            sizes[i % sizes.len()] as usize
        };
        i += 1;
        if size == 0 {
            if let Err(e) = v.feed(&[]) {
                chunked = Err(e);
                break;
            }
            size = 1;
        }
        let end = (pos + size).min(nar_bytes.len());
        if let Err(e) = v.feed(&nar_bytes[pos..end]) {
            chunked = Err(e);
            break;
        }
        pos = end;
    }
    if chunked.is_ok() {
        chunked = v.finish();
        if chunked.is_ok() {
            assert_eq!(v.offset(), nar_bytes.len() as u64);
        }
    }
    assert_eq!(
        whole, chunked,
        "whole and chunked validation disagree (sizes {sizes:?})"
    );
});
