//! Cache names appear in URLs (`/{cache}/nar/...`), object keys and token
//! patterns, so they are restricted to a safe alphabet.

use thiserror::Error;

pub const MAX_LEN: usize = 50;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid cache name {0:?}: 1-50 characters of a-z A-Z 0-9 . _ -, starting with a letter or digit")]
pub struct CacheNameError(pub String);

pub fn validate_cache_name(name: &str) -> Result<(), CacheNameError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_LEN
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CacheNameError(name.chars().take(80).collect()))
    }
}

/// Matches a token's cache pattern against a cache name. `*` matches any run
/// of characters (`alice-*`, `*-ci`, `*`); everything else is literal.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    // Iterative glob with backtracking to the last `*`: linear enough for
    // 50-character names and free of recursion on hostile patterns.
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A pattern as accepted in tokens: a cache name in which `*` may appear.
pub fn validate_pattern(pattern: &str) -> Result<(), CacheNameError> {
    let ok = !pattern.is_empty()
        && pattern.len() <= MAX_LEN
        && pattern
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-*".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CacheNameError(pattern.chars().take(80).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["main", "alice-ci", "a.b_c-1", "0"] {
            assert!(validate_cache_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "_api", "-x", "a/b", "..", "a b", "ü", &"x".repeat(51)] {
            assert!(validate_cache_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs() {
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("alice-*", "alice-ci"));
        assert!(pattern_matches("alice-*", "alice-"));
        assert!(!pattern_matches("alice-*", "alice"));
        assert!(!pattern_matches("alice-*", "bob-alice-x"));
        assert!(pattern_matches("*-ci", "team-ci"));
        assert!(pattern_matches("a*b*c", "aXXbYYc"));
        assert!(!pattern_matches("a*b*c", "aXXbYY"));
        assert!(pattern_matches("main", "main"));
        assert!(!pattern_matches("main", "mainx"));
    }
}
