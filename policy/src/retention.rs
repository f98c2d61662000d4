//! What garbage collection keeps beyond retention: pins (their names, how
//! many revisions a name keeps, which revisions a re-pin releases), size
//! limits (how they are written, their bounds) and which paths a cache over
//! its limit gives up (least recently used first, never a pinned one).

use provenix_provenance::ErrorCode;

use crate::limits::OutOfRange;

/// The most revisions one pin name may keep.
pub const MAX_KEEP_REVISIONS: i64 = 1000;
/// The longest pin name.
pub const MAX_PIN_NAME: usize = 100;

/// A pin name: 1 to 100 of `A-Za-z0-9._-`, not starting with `.` or `-`
/// (so it is safe in a URL path segment and cannot look like a flag).
pub fn check_pin_name(name: &str) -> Result<(), OutOfRange> {
    let ok = !name.is_empty()
        && name.len() <= MAX_PIN_NAME
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(OutOfRange {
            code: ErrorCode::InvalidPin,
            message: format!(
                "a pin name is 1 to {MAX_PIN_NAME} of A-Z a-z 0-9 . _ - not starting with . or -; got {name:?}"
            ),
        })
    }
}

pub fn check_keep_revisions(n: i64) -> Result<(), OutOfRange> {
    if (1..=MAX_KEEP_REVISIONS).contains(&n) {
        Ok(())
    } else {
        Err(OutOfRange {
            code: ErrorCode::InvalidPin,
            message: format!(
                "--keep-revisions must be between 1 and {MAX_KEEP_REVISIONS}; got {n}"
            ),
        })
    }
}

/// Of a name's revisions (any order), those a name keeping `keep` newest
/// revisions drops. `revisions` includes the newest.
pub fn revisions_to_drop(revisions: &[i64], keep: i64) -> Vec<i64> {
    let mut sorted = revisions.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.into_iter().skip(keep.max(1) as usize).collect()
}

/// The largest size limit (1 EiB): the sum of sizes stays far from overflow.
pub const MAX_STORED_SIZE: i64 = 1 << 60;

/// A size limit in bytes: 0 would evict everything at the next GC, which is
/// a deletion, so the smallest limit is 1 MiB.
pub fn check_max_stored_size(bytes: i64) -> Result<(), OutOfRange> {
    if (1 << 20..=MAX_STORED_SIZE).contains(&bytes) {
        Ok(())
    } else {
        Err(OutOfRange {
            code: ErrorCode::InvalidMaxStoredSize,
            message: format!(
                "a maximum stored size must be between 1 MiB and 1 EiB; got {bytes} bytes"
            ),
        })
    }
}

/// Reads a size as people write it: `500000`, `10 GiB`, `10GiB`, `1.5 TB`,
/// `512M`. Binary units (KiB, MiB, ...) and bare letters (K, M, G, T, as Nix
/// and systemd use them) are powers of 1024; KB, MB, GB, TB are powers of
/// 1000. Written by hand: it is twenty lines, and the crates for it bring
/// formatting the server does not need.
pub fn parse_byte_size(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (like 10GiB or 500MB)"))?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ))
        }
    };
    let bytes = (value * multiplier).round();
    if !bytes.is_finite() || bytes > MAX_STORED_SIZE as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes as i64)
}

/// A path GC could evict, in least-recently-used order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvictionCandidate {
    pub path_id: i64,
    /// Bytes freed by evicting it (0 when another holder keeps its NAR).
    pub frees: i64,
    pub pinned: bool,
}

/// Which candidates (given least recently used first) to evict so that at
/// least `excess` bytes are freed: a prefix of the unpinned ones, stopping as
/// soon as enough is freed. Returns the chosen ids and the bytes they free.
pub fn choose_evictions(candidates: &[EvictionCandidate], excess: i64) -> (Vec<i64>, i64) {
    let mut chosen = Vec::new();
    let mut freed = 0;
    for c in candidates {
        if freed >= excess {
            break;
        }
        if c.pinned {
            continue;
        }
        chosen.push(c.path_id);
        freed += c.frees;
    }
    (chosen, freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_names() {
        for (name, ok) in [
            ("nixos-system", true),
            ("a", true),
            ("v1.2_rc", true),
            ("", false),
            (".hidden", false),
            ("-flag", false),
            ("a/b", false),
            ("a b", false),
            ("é", false),
            (&"x".repeat(MAX_PIN_NAME), true),
            (&"x".repeat(MAX_PIN_NAME + 1), false),
        ] {
            assert_eq!(check_pin_name(name).is_ok(), ok, "{name:?}");
        }
        assert_eq!(check_pin_name("").unwrap_err().code, ErrorCode::InvalidPin);
    }

    #[test]
    fn keep_revisions_bounds() {
        for (n, ok) in [
            (0, false),
            (1, true),
            (1000, true),
            (1001, false),
            (-1, false),
        ] {
            assert_eq!(check_keep_revisions(n).is_ok(), ok, "{n}");
        }
    }

    #[test]
    fn re_pinning_drops_all_but_the_newest() {
        assert_eq!(revisions_to_drop(&[1, 2, 3], 1), vec![2, 1]);
        assert_eq!(revisions_to_drop(&[3, 1, 2], 2), vec![1]);
        assert_eq!(revisions_to_drop(&[1, 2], 5), Vec::<i64>::new());
        assert_eq!(revisions_to_drop(&[7], 1), Vec::<i64>::new());
    }

    #[test]
    fn sizes_as_people_write_them() {
        for (text, bytes) in [
            ("500000", Some(500_000)),
            ("10 GiB", Some(10 << 30)),
            ("10GiB", Some(10 << 30)),
            ("10g", Some(10 << 30)),
            ("512M", Some(512 << 20)),
            ("1.5 TB", Some(1_500_000_000_000)),
            ("2KB", Some(2000)),
            ("1 KiB", Some(1024)),
            ("10 bytes", None),
            ("GiB", None),
            ("-1", None),
            ("1e3", None),
            ("99999999 TiB", None),
        ] {
            assert_eq!(parse_byte_size(text).ok(), bytes, "{text:?}");
        }
        for (bytes, ok) in [
            (0, false),
            (1 << 20, true),
            ((1 << 20) - 1, false),
            (MAX_STORED_SIZE, true),
            (MAX_STORED_SIZE + 1, false),
        ] {
            assert_eq!(check_max_stored_size(bytes).is_ok(), ok, "{bytes}");
        }
    }

    fn c(path_id: i64, frees: i64, pinned: bool) -> EvictionCandidate {
        EvictionCandidate {
            path_id,
            frees,
            pinned,
        }
    }

    #[test]
    fn eviction_takes_the_oldest_unpinned_until_enough_is_freed() {
        let lru = [
            c(1, 100, false),
            c(2, 50, true),
            c(3, 0, false),
            c(4, 70, false),
            c(5, 10, false),
        ];
        // Enough after the first: nothing younger goes.
        assert_eq!(choose_evictions(&lru, 100), (vec![1], 100));
        // The pinned one is skipped, one whose NAR another holder keeps
        // frees nothing but is still evicted on the way.
        assert_eq!(choose_evictions(&lru, 150), (vec![1, 3, 4], 170));
        // Not enough unpinned: all of them, and the shortfall shows.
        assert_eq!(choose_evictions(&lru, 1000), (vec![1, 3, 4, 5], 180));
        assert_eq!(choose_evictions(&lru, 0), (vec![], 0));
    }
}
