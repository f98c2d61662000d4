//! Cache rows remembered for a moment, for the one read that is asked
//! far more than any other and whose answers may be kept longer anyway:
//! the transparency log's tiles (immutable, and sent with a year's
//! `Cache-Control` that lets any proxy keep them). A change to a cache
//! made through this server forgets them at once; one made on another
//! replica is seen within [`LIFETIME`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::caches::CacheRow;

/// As long as a checkpoint may be cached.
pub const LIFETIME: Duration = Duration::from_secs(1);

/// Names kept; all are dropped when full (names asked for that do not
/// exist are kept too, so a flood of them only costs a re-read).
const CAPACITY: usize = 1024;

#[derive(Default)]
pub struct RecentCaches {
    rows: Mutex<HashMap<String, (Instant, Option<CacheRow>)>>,
}

impl RecentCaches {
    /// The row read under `name` less than [`LIFETIME`] ago, if any
    /// (`Some(None)`: the cache was missing then).
    pub fn get(&self, name: &str, now: Instant) -> Option<Option<CacheRow>> {
        let rows = self.rows.lock().expect("not poisoned");
        match rows.get(name) {
            Some((read_at, row)) if now.duration_since(*read_at) < LIFETIME => Some(row.clone()),
            _ => None,
        }
    }

    pub fn insert(&self, name: &str, read_at: Instant, row: Option<CacheRow>) {
        let mut rows = self.rows.lock().expect("not poisoned");
        if rows.len() >= CAPACITY {
            rows.clear();
        }
        rows.insert(name.to_string(), (read_at, row));
    }

    /// Forgets every row: a cache was created, changed or destroyed.
    pub fn forget(&self) {
        self.rows.lock().expect("not poisoned").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str) -> CacheRow {
        CacheRow {
            id: 1,
            name: name.into(),
            is_public: true,
            priority: 40,
            store_dir: "/nix/store".into(),
            upstream_cache_key_names: vec![],
            retention_period: None,
        }
    }

    #[test]
    fn a_row_is_kept_for_its_lifetime_only() {
        let memo = RecentCaches::default();
        let t0 = Instant::now();
        memo.insert("main", t0, Some(row("main")));
        memo.insert("gone", t0, None);
        assert_eq!(memo.get("main", t0).unwrap().unwrap().name, "main");
        assert!(memo.get("gone", t0).unwrap().is_none(), "missing is kept");
        assert!(memo.get("main", t0 + LIFETIME).is_none(), "expired");
        assert!(memo.get("other", t0).is_none());
        memo.forget();
        assert!(memo.get("main", t0).is_none(), "forgotten");
    }
}
