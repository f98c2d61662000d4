//! Nix's base-32 encoding ("nixbase32"): the alphabet omits e, o, u and t, and
//! bytes are consumed from the end, so it is not RFC 4648 base32.
//! Written by hand because the only crates that carry it pull in a whole Nix
//! implementation; it is twenty lines and tested against Nix's own output.

use thiserror::Error;

pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("invalid nixbase32 character {0:?}")]
    InvalidChar(char),
    #[error("nixbase32 string has the wrong length {0}")]
    InvalidLength(usize),
    #[error("nixbase32 string has non-zero padding bits")]
    NonZeroPadding,
}

/// Length of the encoding of `n` bytes.
pub const fn encoded_len(n: usize) -> usize {
    (n * 8).div_ceil(5)
}

pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let mut c = (bytes[i] as u16) >> j;
        if i + 1 < bytes.len() {
            c |= (bytes[i + 1] as u16) << (8 - j);
        }
        out.push(ALPHABET[(c & 0x1f) as usize] as char);
    }
    out
}

/// Each byte's digit value, or `NOT_A_DIGIT`: a table, because every
/// narinfo request validates a 32-character hash part and a search of the
/// alphabet per character was 3% of the server's time answering them.
const DIGITS: [u8; 256] = {
    let mut t = [NOT_A_DIGIT; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};
const NOT_A_DIGIT: u8 = 0xff;

pub fn is_valid_char(c: u8) -> bool {
    DIGITS[c as usize] != NOT_A_DIGIT
}

/// Decodes a string that must encode exactly `out_len` bytes.
pub fn decode(s: &str, out_len: usize) -> Result<Vec<u8>, DecodeError> {
    if s.len() != encoded_len(out_len) {
        return Err(DecodeError::InvalidLength(s.len()));
    }
    let mut out = vec![0u8; out_len];
    for (n, c) in s.bytes().rev().enumerate() {
        let digit = match DIGITS[c as usize] {
            NOT_A_DIGIT => return Err(DecodeError::InvalidChar(c as char)),
            d => d as u16,
        };
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        out[i] |= (digit << j) as u8;
        let carry = (digit << j) >> 8;
        if i + 1 < out_len {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return Err(DecodeError::NonZeroPadding);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_chars_are_exactly_the_alphabet() {
        for c in 0..=255u8 {
            assert_eq!(is_valid_char(c), ALPHABET.contains(&c), "byte {c}");
        }
        for (i, &c) in ALPHABET.iter().enumerate() {
            assert_eq!(DIGITS[c as usize] as usize, i);
        }
    }

    #[test]
    fn matches_nix_for_sha256_of_empty_string() {
        // `nix hash to-base32 sha256:e3b0c442...b855` (sha256 of "")
        let digest =
            hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .unwrap();
        let s = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
        assert_eq!(encode(&digest), s);
        assert_eq!(decode(s, 32).unwrap(), digest);
    }

    #[test]
    fn store_path_digest_round_trips() {
        let s = "7rjj86a15146cq1d3qy068lml7n8ykzm";
        let bytes = decode(s, 20).unwrap();
        assert_eq!(encode(&bytes), s);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode("e", 1), Err(DecodeError::InvalidLength(1)));
        assert!(matches!(
            decode("0e", 1),
            Err(DecodeError::InvalidChar('e'))
        ));
        // "zz" sets bits beyond the single byte.
        assert_eq!(decode("zz", 1), Err(DecodeError::NonZeroPadding));
    }
}
