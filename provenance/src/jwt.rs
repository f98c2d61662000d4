//! The shape of a JWT (RFC 7519) read before its signature is checked, and
//! the claim rules jsonwebtoken does not enforce strictly enough.
//!
//! jsonwebtoken accepts a float `exp` (and one above `i64::MAX`), treats an
//! `aud` list as a match when any member matches, and ignores the `crit`
//! header. Those rules are security decisions, so they live here as pure
//! functions, used on OIDC tokens and on the server's own tokens alike, and
//! fuzzed (fuzz/).

use base64::Engine;
use serde_json::{Map, Value};

/// No token, OIDC or the server's own, may be longer: larger than any real
/// CI token, and it bounds the work an anonymous caller can cause.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The furthest ahead an OIDC token's `exp` may be, in seconds: CI tokens
/// live minutes (GitHub's ten), and a bound keeps `exp` arithmetic (the
/// replay record's expiry) far from overflow.
pub const MAX_OIDC_LIFETIME: i64 = 24 * 3600;

/// Why a token's shape is refused, before any key is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtShapeError {
    #[error("the token is {0} bytes long; at most {MAX_TOKEN_LEN} are accepted")]
    TooLong(usize),
    #[error("the token is not a signed JWT (three base64url parts)")]
    NotCompact,
    #[error("the token's header is not a JSON object")]
    HeaderNotJson,
    #[error("the token's payload is not a JSON object")]
    ClaimsNotJson,
    /// RFC 7515, section 4.1.11: a recipient that does not understand a
    /// critical extension must refuse the token. We understand none.
    #[error("the token's header marks parameters critical ({0}); none are supported")]
    CriticalHeader(String),
}

/// Why a claim is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("the token has no {0:?} claim")]
    Missing(&'static str),
    #[error("the token's {0:?} claim is not an integer number of seconds")]
    NotNumericDate(&'static str),
}

/// A compact JWT split and decoded, nothing verified.
#[derive(Debug, Clone, PartialEq)]
pub struct UnverifiedJwt {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
}

fn decode_part(part: &str) -> Option<Map<String, Value>> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

impl UnverifiedJwt {
    /// Splits and decodes `token`, refusing what no valid token looks like.
    pub fn parse(token: &str) -> Result<UnverifiedJwt, JwtShapeError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtShapeError::TooLong(token.len()));
        }
        let mut parts = token.split('.');
        // An empty signature (`alg: none`) is left for the algorithm check,
        // which names what was refused.
        let (Some(header), Some(claims), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtShapeError::NotCompact);
        };
        let header = decode_part(header).ok_or(JwtShapeError::HeaderNotJson)?;
        let claims = decode_part(claims).ok_or(JwtShapeError::ClaimsNotJson)?;
        if let Some(crit) = header.get("crit") {
            return Err(JwtShapeError::CriticalHeader(crit.to_string()));
        }
        Ok(UnverifiedJwt { header, claims })
    }

    pub fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }

    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// The `iss` claim, to choose whose keys verify the token.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }
}

/// A NumericDate claim (`exp`, `nbf`, `iat`) as whole seconds. A float, a
/// string or an integer outside `i64` is refused: read leniently, a float
/// `exp` was taken as "now" and the token's `jti` forgotten a minute later.
pub fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, ClaimError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or(ClaimError::NotNumericDate(name)),
    }
}

/// Like [`numeric_date`], for a claim that must be present.
pub fn required_numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<i64, ClaimError> {
    numeric_date(claims, name)?.ok_or(ClaimError::Missing(name))
}

/// Whether `aud` names exactly `audience`: the string itself, or a list
/// holding only it. A list naming another audience too is refused: such a
/// token was meant for that other party as well, and it could replay it here.
pub fn audience_is_exactly(claims: &Map<String, Value>, audience: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(list)) => {
            !list.is_empty() && list.iter().all(|a| a.as_str() == Some(audience))
        }
        _ => false,
    }
}

/// Whether `aud` is exactly one of `accepted` (for the server's own tokens,
/// bound to a configured list): every audience the token names is accepted.
pub fn audiences_within(claims: &Map<String, Value>, accepted: &[String]) -> bool {
    let ok = |a: &Value| a.as_str().is_some_and(|a| accepted.iter().any(|x| x == a));
    match claims.get("aud") {
        Some(Value::String(_)) => ok(&claims["aud"]),
        Some(Value::Array(list)) => !list.is_empty() && list.iter().all(ok),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(v: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    fn token(header: &str, claims: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(claims))
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn parses_a_compact_token() {
        let t = UnverifiedJwt::parse(&token(
            r#"{"alg":"RS256","kid":"k1"}"#,
            r#"{"iss":"https://x"}"#,
        ))
        .unwrap();
        assert_eq!(t.alg(), Some("RS256"));
        assert_eq!(t.kid(), Some("k1"));
        assert_eq!(t.issuer(), Some("https://x"));
    }

    #[test]
    fn refuses_what_no_token_looks_like() {
        let ok_header = r#"{"alg":"RS256"}"#;
        let cases = [
            ("a.b".to_string(), JwtShapeError::NotCompact),
            ("a.b.c.d".to_string(), JwtShapeError::NotCompact),
            (token("[1]", "{}"), JwtShapeError::HeaderNotJson),
            (token(ok_header, "\"s\""), JwtShapeError::ClaimsNotJson),
            // Padding is not base64url as JWS uses it.
            (
                format!("{}=.{}.c2ln", b64(ok_header), b64("{}")),
                JwtShapeError::HeaderNotJson,
            ),
            (
                token(r#"{"alg":"RS256","crit":["exp"]}"#, "{}"),
                JwtShapeError::CriticalHeader(r#"["exp"]"#.into()),
            ),
            (
                "a".repeat(MAX_TOKEN_LEN + 1),
                JwtShapeError::TooLong(MAX_TOKEN_LEN + 1),
            ),
        ];
        for (t, want) in cases {
            assert_eq!(UnverifiedJwt::parse(&t), Err(want), "{t:.60}");
        }
    }

    #[test]
    fn numeric_dates_are_whole_seconds_in_range() {
        let c = claims(json!({
            "exp": 1700000000, "nbf": 1.5, "iat": "1700000000",
            "big": 9223372036854775808u64, "neg": -5
        }));
        assert_eq!(numeric_date(&c, "exp"), Ok(Some(1700000000)));
        assert_eq!(
            numeric_date(&c, "nbf"),
            Err(ClaimError::NotNumericDate("nbf"))
        );
        assert_eq!(
            numeric_date(&c, "iat"),
            Err(ClaimError::NotNumericDate("iat"))
        );
        assert_eq!(
            numeric_date(&c, "big"),
            Err(ClaimError::NotNumericDate("big"))
        );
        assert_eq!(numeric_date(&c, "neg"), Ok(Some(-5)));
        assert_eq!(numeric_date(&c, "none"), Ok(None));
        assert_eq!(
            required_numeric_date(&c, "none"),
            Err(ClaimError::Missing("none"))
        );
        let float_exp = claims(json!({"exp": 1700000000.0}));
        assert_eq!(
            required_numeric_date(&float_exp, "exp"),
            Err(ClaimError::NotNumericDate("exp"))
        );
    }

    #[test]
    fn audience_must_be_exactly_ours() {
        let table = [
            (json!("https://c/"), true),
            (json!(["https://c/"]), true),
            (json!(["https://c/", "https://c/"]), true),
            (json!(["https://c/", "https://other/"]), false),
            (json!([]), false),
            (json!("https://c"), false),
            (json!(null), false),
            (json!(7), false),
        ];
        for (aud, want) in table {
            let c = claims(json!({ "aud": aud }));
            assert_eq!(audience_is_exactly(&c, "https://c/"), want, "{aud}");
        }
        assert!(!audience_is_exactly(&Map::new(), "https://c/"));
    }

    #[test]
    fn bound_audiences_must_all_be_accepted() {
        let accepted = ["a".to_string(), "b".to_string()];
        let table = [
            (json!("a"), true),
            (json!(["a", "b"]), true),
            (json!(["a", "x"]), false),
            (json!("x"), false),
            (json!([]), false),
        ];
        for (aud, want) in table {
            let c = claims(json!({ "aud": aud }));
            assert_eq!(audiences_within(&c, &accepted), want, "{aud}");
        }
    }
}
