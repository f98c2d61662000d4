//! Tiles remembered in memory, and how far each log is known to reach, so
//! a tile asked again costs no database or storage read. Every tile is
//! immutable under its path, partial ones too (`.p/W` is the first W
//! hashes or entries, and the log only grows), so nothing here is ever
//! stale; a log only grows under one cache id (ids are never reused), so
//! a size once read stays true.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

/// Bytes of tiles kept (a hash tile is 8 KiB; bundles vary); all are
/// dropped when full, which is simpler than an LRU and costs one re-read
/// per tile.
const BUDGET: usize = 8 << 20;
/// Larger bundles are read from storage every time rather than crowd out
/// the hash tiles.
const LARGEST: usize = 1 << 20;

#[derive(Default)]
pub struct TileMemo {
    tiles: Mutex<Tiles>,
    /// Per cache id, the largest size its log was read to have.
    sizes: Mutex<HashMap<i64, u64>>,
}

#[derive(Default)]
struct Tiles {
    by_path: HashMap<(i64, String), Bytes>,
    bytes: usize,
}

impl TileMemo {
    pub fn tile(&self, cache_id: i64, path: &str) -> Option<Bytes> {
        let tiles = self.tiles.lock().expect("not poisoned");
        tiles.by_path.get(&(cache_id, path.to_string())).cloned()
    }

    pub fn keep_tile(&self, cache_id: i64, path: &str, body: &Bytes) {
        if body.len() > LARGEST {
            return;
        }
        let mut tiles = self.tiles.lock().expect("not poisoned");
        if tiles.bytes + body.len() > BUDGET {
            *tiles = Tiles::default();
        }
        tiles.bytes += body.len();
        tiles
            .by_path
            .insert((cache_id, path.to_string()), body.clone());
    }

    /// The size the log of `cache_id` is known to have reached.
    pub fn known_size(&self, cache_id: i64) -> u64 {
        let sizes = self.sizes.lock().expect("not poisoned");
        sizes.get(&cache_id).copied().unwrap_or(0)
    }

    pub fn saw_size(&self, cache_id: i64, size: u64) {
        let mut sizes = self.sizes.lock().expect("not poisoned");
        let known = sizes.entry(cache_id).or_default();
        *known = (*known).max(size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_only_grow_and_tiles_stay_within_the_budget() {
        let memo = TileMemo::default();
        memo.saw_size(1, 300);
        memo.saw_size(1, 200);
        assert_eq!((memo.known_size(1), memo.known_size(2)), (300, 0));

        let tile = Bytes::from(vec![7u8; 8192]);
        memo.keep_tile(1, "tile/0/000", &tile);
        assert_eq!(memo.tile(1, "tile/0/000"), Some(tile.clone()));
        assert_eq!(memo.tile(2, "tile/0/000"), None, "another log's");
        memo.keep_tile(1, "tile/entries/000", &Bytes::from(vec![0; LARGEST + 1]));
        assert_eq!(memo.tile(1, "tile/entries/000"), None, "too large");
        for n in 0..BUDGET / tile.len() + 1 {
            memo.keep_tile(1, &format!("tile/0/{n:03}"), &tile);
        }
        assert!(memo.tiles.lock().unwrap().bytes <= BUDGET);
    }
}
