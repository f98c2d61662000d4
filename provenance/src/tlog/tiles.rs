//! c2sp.org/tlog-tiles: the paths `tile/<L>/<N>[.p/<W>]` and
//! `tile/entries/<N>[.p/<W>]`, which tiles a tree of a given size has, and
//! entry bundles. Tiles are 8 levels high (256 hashes wide), as the
//! specification fixes; `tlog_tiles` (Go's scheme) also encodes the height
//! in its paths, so paths are translated here and checked by its parser.

use thiserror::Error;
use tlog_tiles::Tile;

use super::tree::Hashes;

/// The specification's tile height: 2^8 = 256 hashes per full tile.
pub const HEIGHT: u8 = 8;
/// Entries in a full bundle.
pub const WIDTH: u64 = 1 << HEIGHT;
/// The largest entry a bundle can hold (its length is a big-endian u16).
pub const MAX_ENTRY: usize = u16::MAX as usize;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TileError {
    #[error("not a tile path (tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>])")]
    BadPath,
    #[error("the tree has no such tile")]
    NotInTree,
}

/// A tile or entry bundle named by a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePath {
    tile: Tile,
}

impl TilePath {
    /// Reads a path as the specification writes it (after `<prefix>/`).
    pub fn parse(path: &str) -> Result<TilePath, TileError> {
        let rest = path.strip_prefix("tile/").ok_or(TileError::BadPath)?;
        // `tlog_tiles` panics on a level over 63 or a width of 0: bound
        // both before it parses.
        let small_number = |s: &str, max: u32| {
            s.len() <= 3
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'))
                && s.parse::<u32>().is_ok_and(|n| n <= max)
        };
        if let Some((_, width)) = rest.rsplit_once(".p/") {
            if !small_number(width, 255) || width == "0" {
                return Err(TileError::BadPath);
            }
        }
        if !rest.starts_with("entries/") {
            let level = rest.split('/').next().unwrap_or_default();
            if !small_number(level, 63) {
                return Err(TileError::BadPath);
            }
        }
        let go_path = match rest.strip_prefix("entries/") {
            Some(n) => format!("tile/{HEIGHT}/data/{n}"),
            None => format!("tile/{HEIGHT}/{rest}"),
        };
        let tile = Tile::from_path(&go_path).map_err(|_| TileError::BadPath)?;
        Ok(TilePath { tile })
    }

    pub fn hash_tile(level: u8, index: u64, width: u32) -> TilePath {
        TilePath {
            tile: Tile::new(HEIGHT, level, index, width, false),
        }
    }

    pub fn bundle(index: u64, width: u32) -> TilePath {
        TilePath {
            tile: Tile::new(HEIGHT, 0, index, width, true),
        }
    }

    /// The path as served: `tile/0/x001/234.p/7`, `tile/entries/000`.
    pub fn path(&self) -> String {
        let go = self.tile.path();
        let rest = go
            .strip_prefix(&format!("tile/{HEIGHT}/"))
            .expect("a tile of the specification's height");
        match rest.strip_prefix("data/") {
            Some(n) => format!("tile/entries/{n}"),
            None => format!("tile/{rest}"),
        }
    }

    pub fn is_bundle(&self) -> bool {
        self.tile.is_data()
    }

    pub fn is_full(&self) -> bool {
        u64::from(self.tile.width()) == WIDTH
    }

    pub fn width(&self) -> u32 {
        self.tile.width()
    }

    /// The records a bundle holds: `start..start + width`.
    pub fn records(&self) -> std::ops::Range<u64> {
        let start = self.tile.level_index() * WIDTH;
        start..start + u64::from(self.tile.width())
    }

    /// Whether a tree of `size` records has this tile: every hash (or
    /// entry) it holds is in the tree. A partial tile of any width up to
    /// the tree's edge is served, as a client holding an older checkpoint
    /// asks for the narrower tile that checkpoint implied; its bytes are a
    /// prefix of the wider one's and never change.
    pub fn check_in_tree(&self, size: u64) -> Result<(), TileError> {
        let level = if self.is_bundle() {
            0
        } else {
            self.tile.level()
        };
        let shift = u32::from(HEIGHT) * u32::from(level);
        let span = size.checked_shr(shift).unwrap_or(0);
        let end = self
            .tile
            .level_index()
            .checked_mul(WIDTH)
            .and_then(|start| start.checked_add(u64::from(self.tile.width())))
            .ok_or(TileError::NotInTree)?;
        if end <= span {
            Ok(())
        } else {
            Err(TileError::NotInTree)
        }
    }

    /// The stored hash indexes this (hash) tile is made of.
    pub fn hash_indexes(&self) -> Vec<u64> {
        super::tree::indexes_read_by(|h| self.tile.read_data(h))
    }

    /// The tile's bytes: its hashes, concatenated.
    pub fn hash_data(&self, hashes: &Hashes) -> Result<Vec<u8>, tlog_tiles::Error> {
        self.tile.read_data(hashes)
    }
}

/// An entry bundle: each entry prefixed by its length as a big-endian u16.
pub fn bundle(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
    for e in entries {
        let len = u16::try_from(e.len()).expect("entries are at most MAX_ENTRY bytes");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}

/// The entries of a bundle; None if it is not well formed.
pub fn unbundle(mut data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut entries = Vec::new();
    while !data.is_empty() {
        let len = usize::from(u16::from_be_bytes([*data.first()?, *data.get(1)?]));
        let entry = data.get(2..2 + len)?;
        entries.push(entry.to_vec());
        data = &data[2 + len..];
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_the_specifications() {
        for (path, level, index, width) in [
            ("tile/0/000", 0u8, 0u64, 256u32),
            ("tile/0/x001/x234/067", 0, 1_234_067, 256),
            ("tile/1/017.p/3", 1, 17, 3),
            ("tile/2/000.p/1", 2, 0, 1),
        ] {
            let t = TilePath::parse(path).unwrap();
            assert_eq!(t, TilePath::hash_tile(level, index, width), "{path}");
            assert_eq!(t.path(), path);
            assert!(!t.is_bundle());
        }
        let b = TilePath::parse("tile/entries/x001/002.p/255").unwrap();
        assert!(b.is_bundle());
        assert_eq!(b.records(), 1002 * 256..1002 * 256 + 255);
        assert_eq!(b.path(), "tile/entries/x001/002.p/255");
        for bad in [
            "tile/0/1",
            "tile/0/0001",
            "tile/0/x000/001",
            "tile/0/001.p/0",
            "tile/0/001.p/256",
            "tile/0/001.p/01",
            "tile/64/000",
            "tile/255/000",
            "tile/00/000",
            "tile/-1/000",
            "tile/0/000.p/9999",
            "tile/entries/000.p/0",
            "tile/0/001/",
            "tile/entries/1",
            "tile/data/000",
            "tile/8/0/000",
            "tiles/0/000",
            "tile/0/x001",
            "",
        ] {
            assert_eq!(TilePath::parse(bad), Err(TileError::BadPath), "{bad:?}");
        }
    }

    #[test]
    fn a_tree_has_the_tiles_its_size_gives() {
        // The specification's example: a tree of 70,000 records.
        let size = 70_000;
        for (path, has) in [
            ("tile/0/272", true),
            ("tile/0/273", false),
            ("tile/0/273.p/112", true),
            // Narrower than the edge: what an older checkpoint implied.
            ("tile/0/273.p/111", true),
            ("tile/0/273.p/113", false),
            ("tile/1/000", true),
            ("tile/1/001.p/17", true),
            ("tile/1/001.p/18", false),
            ("tile/2/000.p/1", true),
            ("tile/2/000", false),
            ("tile/3/000.p/1", false),
            ("tile/entries/273.p/112", true),
            ("tile/entries/274.p/1", false),
        ] {
            let t = TilePath::parse(path).unwrap();
            assert_eq!(t.check_in_tree(size).is_ok(), has, "{path}");
        }
        assert!(TilePath::parse("tile/0/000")
            .unwrap()
            .check_in_tree(255)
            .is_err());
        assert!(TilePath::parse("tile/0/000")
            .unwrap()
            .check_in_tree(256)
            .is_ok());
        assert!(TilePath::parse("tile/1/000.p/1")
            .unwrap()
            .check_in_tree(256)
            .is_ok());
        assert!(TilePath::parse("tile/0/000.p/1")
            .unwrap()
            .check_in_tree(0)
            .is_err());
    }

    #[test]
    fn bundles_round_trip_and_refuse_garbage() {
        let entries = vec![b"a".to_vec(), vec![], vec![7u8; 300]];
        let b = bundle(&entries);
        assert_eq!(&b[..3], &[0, 1, b'a']);
        assert_eq!(unbundle(&b).unwrap(), entries);
        assert_eq!(unbundle(&b[..b.len() - 1]), None);
        assert_eq!(unbundle(&[0]), None);
    }
}
