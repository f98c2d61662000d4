//! `jwt::UnverifiedJwt::parse` and the claim rules, on what anyone may send
//! as a bearer token (before any signature is checked).
//!
//! Input: if byte 0 is odd, the rest is the token itself; if even, the rest
//! is `<header JSON>\x00<claims JSON>\x00<signature>`, each part base64url
//! encoded here, so the fuzzer works on the JSON rather than on base64.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use provenix_provenance::jwt::{self, UnverifiedJwt, MAX_TOKEN_LEN};

const AUD: &str = "https://cache.example/";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 1 {
        let Ok(s) = std::str::from_utf8(rest) else {
            return;
        };
        s.to_string()
    } else {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts = rest.splitn(3, |&b| b == 0);
        let (h, c, s) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        format!("{}.{}.{}", b64.encode(h), b64.encode(c), b64.encode(s))
    };

    let Ok(t) = UnverifiedJwt::parse(&token) else {
        return;
    };
    assert!(token.len() <= MAX_TOKEN_LEN);
    assert!(!t.header.contains_key("crit"));
    let _ = (t.alg(), t.kid(), t.issuer());

    for name in ["exp", "nbf", "iat"] {
        match jwt::numeric_date(&t.claims, name) {
            Ok(None) => assert!(!t.claims.contains_key(name)),
            Ok(Some(v)) => assert_eq!(t.claims[name].as_i64(), Some(v)),
            Err(_) => assert!(t.claims[name].as_i64().is_none()),
        }
    }
    let _ = jwt::required_numeric_date(&t.claims, "exp");

    let exactly = jwt::audience_is_exactly(&t.claims, AUD);
    // With one accepted audience the two rules must agree.
    assert_eq!(
        exactly,
        jwt::audiences_within(&t.claims, &[AUD.to_string()])
    );
    let accepted = [AUD.to_string(), "other".to_string()];
    if exactly {
        assert!(jwt::audiences_within(&t.claims, &accepted));
    }
    let _ = jwt::audiences_within(&t.claims, &[]);
});
