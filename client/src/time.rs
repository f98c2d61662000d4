//! Times as the command line reads and prints them: Unix seconds, RFC 3339.

use anyhow::{Context, Result};

/// Unix seconds as RFC 3339 (UTC).
pub fn format_time(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Unix seconds, or an RFC 3339 time (`2026-11-21T10:00:00Z`).
pub fn parse_time(s: &str) -> Result<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let t = humantime::parse_rfc3339_weak(s).with_context(|| {
        format!("invalid time {s:?} (RFC 3339 like 2026-11-21T10:00:00Z, or Unix seconds)")
    })?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0))
}
