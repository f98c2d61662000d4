//! An upload sent in parts: for servers behind a proxy that limits request
//! bodies (nginx's `client_max_body_size`, Cloudflare's 100 MB). The server
//! announces the largest body it wants (`max_request_body` in the answer to
//! get-missing-paths); a NAR larger than that is sent as an upload session:
//! started with the same signed statement a single upload carries, then
//! parts of exactly `part_size` bytes (the last one shorter) in any order,
//! then completed, when the server streams the parts in order through the
//! same checks as a single upload and makes the path visible at once or
//! not at all.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::upload::UploadOutcome;

/// The smallest part a server may ask for: below it the requests cost
/// more than the bytes.
pub const MIN_PART_SIZE: u64 = 64 * 1024;

/// How a NAR of `nar_size` bytes divides into parts of `part_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartLayout {
    pub nar_size: u64,
    pub part_size: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PartError {
    #[error("part {part} is out of range: this upload has parts 0 to {}", .count - 1)]
    OutOfRange { part: u64, count: u64 },
    #[error("part {part} must be {expected} bytes, not {got}")]
    WrongSize { part: u64, expected: u64, got: u64 },
}

impl PartLayout {
    /// `part_size` is at least [`MIN_PART_SIZE`] (the server's config
    /// ensures it).
    pub fn new(nar_size: u64, part_size: u64) -> PartLayout {
        PartLayout {
            nar_size,
            part_size: part_size.max(MIN_PART_SIZE),
        }
    }

    /// How many parts: at least one, so an empty body is still a part.
    pub fn count(&self) -> u64 {
        self.nar_size.div_ceil(self.part_size).max(1)
    }

    /// The byte range of the NAR that part `part` holds.
    pub fn range(&self, part: u64) -> Result<std::ops::Range<u64>, PartError> {
        let count = self.count();
        if part >= count {
            return Err(PartError::OutOfRange { part, count });
        }
        let start = part * self.part_size;
        Ok(start..(start + self.part_size).min(self.nar_size))
    }

    /// The size part `part` must have.
    pub fn size_of(&self, part: u64) -> Result<u64, PartError> {
        self.range(part).map(|r| r.end - r.start)
    }

    /// Whether `got` bytes is what part `part` must hold.
    pub fn check(&self, part: u64, got: u64) -> Result<(), PartError> {
        let expected = self.size_of(part)?;
        if got != expected {
            return Err(PartError::WrongSize {
                part,
                expected,
                got,
            });
        }
        Ok(())
    }
}

/// An upload session as the server has it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadSession {
    /// Unguessable; whoever holds it may send parts (they are checked
    /// against the signed NAR hash and size at completion).
    pub id: String,
    pub part_size: u64,
    pub part_count: u64,
    /// The parts the server holds, ascending.
    pub received: Vec<u64>,
    /// Unix seconds after which the session can no longer complete (its
    /// key's validity plus the completion grace); its parts are reclaimed.
    pub expires_at: i64,
}

impl UploadSession {
    /// The parts still to send, ascending.
    pub fn missing(&self) -> Vec<u64> {
        let mut have = self.received.iter().peekable();
        (0..self.part_count)
            .filter(|n| {
                while have.next_if(|r| *r < n).is_some() {}
                have.next_if_eq(&n).is_none()
            })
            .collect()
    }
}

/// The answer to starting a session: an outcome when there is nothing to
/// send (the cache has the path), else the session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadSessionStart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<UploadOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<UploadSession>,
}

/// The answer to a part: what was stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartReceived {
    pub part: u64,
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_nar_exactly_once() {
        for (nar, part, count, last) in [
            (0, MIN_PART_SIZE, 1, 0),
            (1, MIN_PART_SIZE, 1, 1),
            (MIN_PART_SIZE, MIN_PART_SIZE, 1, MIN_PART_SIZE),
            (MIN_PART_SIZE + 1, MIN_PART_SIZE, 2, 1),
            (300 << 20, 8 << 20, 38, (300 << 20) - 37 * (8 << 20)),
        ] {
            let l = PartLayout::new(nar, part);
            assert_eq!(l.count(), count, "{nar} / {part}");
            assert_eq!(l.size_of(count - 1), Ok(last));
            let mut next = 0;
            for n in 0..count {
                let r = l.range(n).unwrap();
                assert_eq!(r.start, next);
                next = r.end;
            }
            assert_eq!(next, nar);
            assert_eq!(
                l.range(count),
                Err(PartError::OutOfRange { part: count, count })
            );
        }
    }

    #[test]
    fn a_part_size_below_the_minimum_is_raised_to_it() {
        assert_eq!(PartLayout::new(1 << 20, 1).part_size, MIN_PART_SIZE);
    }

    #[test]
    fn a_part_must_have_its_exact_size() {
        let l = PartLayout::new(3 * MIN_PART_SIZE - 10, MIN_PART_SIZE);
        assert_eq!(l.check(0, MIN_PART_SIZE), Ok(()));
        assert_eq!(l.check(2, MIN_PART_SIZE - 10), Ok(()));
        assert_eq!(
            l.check(1, MIN_PART_SIZE + 1),
            Err(PartError::WrongSize {
                part: 1,
                expected: MIN_PART_SIZE,
                got: MIN_PART_SIZE + 1
            })
        );
        assert_eq!(
            l.check(2, MIN_PART_SIZE),
            Err(PartError::WrongSize {
                part: 2,
                expected: MIN_PART_SIZE - 10,
                got: MIN_PART_SIZE
            })
        );
    }

    #[test]
    fn missing_parts_are_those_not_received() {
        let s = |received: Vec<u64>| UploadSession {
            id: "x".into(),
            part_size: MIN_PART_SIZE,
            part_count: 5,
            received,
            expires_at: 0,
        };
        assert_eq!(s(vec![]).missing(), vec![0, 1, 2, 3, 4]);
        assert_eq!(s(vec![0, 1, 3]).missing(), vec![2, 4]);
        assert_eq!(s(vec![0, 1, 2, 3, 4]).missing(), Vec::<u64>::new());
        // A stray number past the end is ignored.
        assert_eq!(s(vec![1, 9]).missing(), vec![0, 2, 3, 4]);
    }
}
