//! Bounds on the durations a request may set, so no permission can be
//! stretched into another: a retention short enough to empty a cache at the
//! next GC is a deletion (it needs `--delete` too), and no duration can
//! overflow the arithmetic that turns it into a time.

use provenix_provenance::ErrorCode;

pub const DAY: i64 = 24 * 3600;

/// The longest a rotated-out cache key keeps signing beside the new one.
pub const MAX_KEY_OVERLAP: i64 = 365 * DAY;
/// The longest retention period a cache may set (about 100 years).
pub const MAX_RETENTION: i64 = 36_525 * DAY;
/// A retention shorter than this (and not 0, "forever") empties the cache
/// of everything not pulled within it, so setting it needs the delete
/// permission beside the retention one.
pub const RETENTION_FLOOR: i64 = DAY;

/// The most cache keys that may sign at once. Each live key signs every
/// narinfo answer, so repeated rotations with an overlap must not pile up.
pub const MAX_LIVE_KEYS: usize = 4;

/// A refusal of a value out of range, with the range in its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    pub code: ErrorCode,
    pub message: String,
}

pub fn check_key_overlap(seconds: i64) -> Result<(), OutOfRange> {
    if (0..=MAX_KEY_OVERLAP).contains(&seconds) {
        Ok(())
    } else {
        Err(OutOfRange {
            code: ErrorCode::InvalidOverlap,
            message: format!(
                "the key overlap must be between 0 and {MAX_KEY_OVERLAP} seconds (365 days); got {seconds}"
            ),
        })
    }
}

/// Whether a rotation with `overlap` may happen while `live_now` keys sign:
/// with an overlap they all keep signing beside the new one.
pub fn check_live_keys(live_now: usize, overlap: i64) -> Result<(), OutOfRange> {
    if overlap == 0 || live_now < MAX_LIVE_KEYS {
        Ok(())
    } else {
        Err(OutOfRange {
            code: ErrorCode::InvalidOverlap,
            message: format!(
                "{live_now} cache keys sign now; a rotation with an overlap would make it {}, and at most {MAX_LIVE_KEYS} may sign at once: rotate with an overlap of 0 (the new key alone signs), or wait for an overlap to end",
                live_now + 1
            ),
        })
    }
}

pub fn check_retention(seconds: i64) -> Result<(), OutOfRange> {
    if (0..=MAX_RETENTION).contains(&seconds) {
        Ok(())
    } else {
        Err(OutOfRange {
            code: ErrorCode::InvalidRetention,
            message: format!(
                "the retention period must be between 0 (keep forever) and {MAX_RETENTION} seconds (100 years); got {seconds}"
            ),
        })
    }
}

/// Whether setting `seconds` of retention is, in effect, deleting paths.
pub fn retention_is_deletion(seconds: i64) -> bool {
    seconds > 0 && seconds < RETENTION_FLOOR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        for (s, ok) in [
            (-1, false),
            (0, true),
            (MAX_KEY_OVERLAP, true),
            (MAX_KEY_OVERLAP + 1, false),
            (i64::MAX, false),
            (i64::MIN, false),
        ] {
            assert_eq!(check_key_overlap(s).is_ok(), ok, "overlap {s}");
        }
        for (s, ok) in [
            (-5, false),
            (0, true),
            (1, true),
            (MAX_RETENTION, true),
            (MAX_RETENTION + 1, false),
            (i64::MAX, false),
        ] {
            assert_eq!(check_retention(s).is_ok(), ok, "retention {s}");
        }
        assert_eq!(
            check_retention(-5).unwrap_err().code,
            ErrorCode::InvalidRetention
        );
        // Adding the largest allowed value to any plausible clock cannot overflow.
        assert!(4_102_444_800i64
            .checked_add(MAX_RETENTION.max(MAX_KEY_OVERLAP))
            .is_some());
    }

    #[test]
    fn short_retention_is_a_deletion() {
        for (s, deletes) in [
            (0, false),
            (1, true),
            (RETENTION_FLOOR - 1, true),
            (RETENTION_FLOOR, false),
            (MAX_RETENTION, false),
        ] {
            assert_eq!(retention_is_deletion(s), deletes, "{s}");
        }
    }

    #[test]
    fn rotations_cannot_pile_up_live_keys() {
        assert!(check_live_keys(1, 86_400).is_ok());
        assert!(check_live_keys(MAX_LIVE_KEYS - 1, 86_400).is_ok());
        let refused = check_live_keys(MAX_LIVE_KEYS, 86_400).unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidOverlap);
        assert!(
            refused.message.contains("overlap of 0"),
            "{}",
            refused.message
        );
        // Without an overlap the new key alone signs.
        assert!(check_live_keys(MAX_LIVE_KEYS, 0).is_ok());
    }
}
