//! `nixbase32::decode` on arbitrary strings and lengths.
//!
//! Input: byte 0 chooses the decoded length (values below 0x80: that many
//! bytes; 0x80 and above: the length whose encoding is as long as the string,
//! if there is one, so the fuzzer reaches the decoder proper); the rest is
//! the string. The same rest, as raw bytes, is encoded and decoded back.
//!
//! The round trip `encode(decode(s)) == s` holds for every string that
//! decodes: each character contributes its 5 bits to the output except the
//! bits above the last byte, and `decode` refuses those unless they are zero
//! (`NonZeroPadding`), so no two accepted strings decode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provenix_provenance::nixbase32::{self, DecodeError};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };

    let encoded = nixbase32::encode(rest);
    assert_eq!(encoded.len(), nixbase32::encoded_len(rest.len()));
    assert!(encoded.bytes().all(nixbase32::is_valid_char));
    assert_eq!(nixbase32::decode(&encoded, rest.len()).as_deref(), Ok(rest));

    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    let out_len = if sel < 0x80 {
        sel as usize
    } else {
        // The smallest n with encoded_len(n) == s.len(); none for some lengths.
        match (0..=s.len()).find(|&n| nixbase32::encoded_len(n) >= s.len()) {
            Some(n) if nixbase32::encoded_len(n) == s.len() => n,
            _ => (s.len() * 5) / 8,
        }
    };
    match nixbase32::decode(s, out_len) {
        Ok(bytes) => {
            assert_eq!(bytes.len(), out_len);
            assert_eq!(
                nixbase32::encode(&bytes),
                s,
                "decode accepted a non-canonical string"
            );
        }
        Err(DecodeError::InvalidLength(n)) => {
            assert_eq!(n, s.len());
            assert_ne!(s.len(), nixbase32::encoded_len(out_len));
        }
        Err(DecodeError::InvalidChar(_)) => {
            assert!(!s.bytes().all(nixbase32::is_valid_char));
        }
        Err(DecodeError::NonZeroPadding) => {}
    }
});
