//! The server's clock: every validity, retention and record time is Unix
//! seconds from here, so tests and reviews have one place to look.

/// Unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
