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

    /// Whether this is the tile at the edge of a tree of `size` records:
    /// full, or the partial tile of exactly the width that tree has there
    /// (the one its current readers ask for; narrower ones are an older
    /// checkpoint's).
    pub fn ends_at_edge(&self, size: u64) -> bool {
        if self.is_full() {
            return true;
        }
        let level = if self.is_bundle() {
            0
        } else {
            self.tile.level()
        };
        let span = size
            .checked_shr(u32::from(HEIGHT) * u32::from(level))
            .unwrap_or(0);
        self.tile
            .level_index()
            .checked_mul(WIDTH)
            .and_then(|start| start.checked_add(u64::from(self.tile.width())))
            == Some(span)
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

/// An entry bundle: each entry prefixed by its length as a big-endian u16;
/// None if an entry is longer than a bundle can hold.
pub fn bundle<E: AsRef<[u8]>>(entries: &[E]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.as_ref().len() + 2).sum());
    for e in entries {
        let e = e.as_ref();
        let len = u16::try_from(e.len()).ok()?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Some(out)
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

/// The path of a tile `tlog_tiles` names (a client's tile reads).
pub fn path_of(tile: &Tile) -> String {
    TilePath { tile: *tile }.path()
}

/// A client's view of a tree through its tiles: every hash it reads comes
/// from a tile authenticated against the tree's root (tlog_tiles'
/// `TileHashReader`), so a proof built from them cannot hold against a
/// tampered tile. Two passes, as with the server's stored hashes: learn
/// which tiles `f` reads ([`tiles_read_by`]), fetch them, run it on them.
pub fn with_tiles<T>(
    size: u64,
    root: tlog_tiles::Hash,
    tiles: &std::collections::HashMap<Tile, Vec<u8>>,
    f: impl Fn(&tlog_tiles::TileHashReader<'_>) -> Result<T, tlog_tiles::Error>,
) -> Result<T, tlog_tiles::Error> {
    let reader = Fetched {
        tiles,
        missing: Default::default(),
    };
    f(&tlog_tiles::TileHashReader::new(size, root, &reader))
}

/// The tiles `f` reads for a tree of `size` records with `root`.
pub fn tiles_read_by<T>(
    size: u64,
    root: tlog_tiles::Hash,
    f: impl Fn(&tlog_tiles::TileHashReader<'_>) -> Result<T, tlog_tiles::Error>,
) -> Vec<Tile> {
    let none = std::collections::HashMap::new();
    let reader = Fetched {
        tiles: &none,
        missing: Default::default(),
    };
    let _ = f(&tlog_tiles::TileHashReader::new(size, root, &reader));
    reader.missing.into_inner()
}

struct Fetched<'a> {
    tiles: &'a std::collections::HashMap<Tile, Vec<u8>>,
    missing: std::cell::RefCell<Vec<Tile>>,
}

impl tlog_tiles::TileReader for Fetched<'_> {
    fn height(&self) -> u8 {
        HEIGHT
    }

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        let mut out = Vec::with_capacity(tiles.len());
        for t in tiles {
            match self.tiles.get(t) {
                Some(d) => out.push(d.clone()),
                None => self.missing.borrow_mut().push(*t),
            }
        }
        if out.len() == tiles.len() {
            Ok(out)
        } else {
            Err(tlog_tiles::Error::IndexesNotInTree)
        }
    }

    fn save_tiles(&self, _: &[Tile], _: &[Vec<u8>]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edge_is_the_partial_tile_of_the_trees_own_width() {
        let t = |p: &str| TilePath::parse(p).unwrap();
        assert!(t("tile/0/000").ends_at_edge(100), "full tiles always");
        assert!(t("tile/0/000.p/100").ends_at_edge(100));
        assert!(
            !t("tile/0/000.p/99").ends_at_edge(100),
            "an older checkpoint's"
        );
        assert!(t("tile/entries/001.p/4").ends_at_edge(260));
        assert!(!t("tile/entries/000.p/4").ends_at_edge(260));
        assert!(
            t("tile/1/000.p/1").ends_at_edge(300),
            "level 1: 300 >> 8 = 1"
        );
        assert!(!t("tile/1/000.p/1").ends_at_edge(600));
    }

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

    /// A client's proof from served tiles holds, and one tampered tile
    /// makes it fail rather than prove something else.
    #[test]
    fn proofs_from_tiles_are_authenticated_by_the_root() {
        use crate::tlog::tree::{self, Hashes};
        let entries: Vec<Vec<u8>> = (0..600).map(|i| format!("e{i}").into_bytes()).collect();
        let out = tree::append(0, &entries, Hashes::default()).unwrap();
        let table = Hashes::new(out.stored.iter().copied());
        let serve = |t: &Tile| TilePath { tile: *t }.hash_data(&table).unwrap();
        let (size, root) = (600, out.root);
        let prove = |r: &tlog_tiles::TileHashReader<'_>| tlog_tiles::prove_record(size, 517, r);
        let wanted = tiles_read_by(size, root, prove);
        assert!(!wanted.is_empty());
        let mut fetched: std::collections::HashMap<Tile, Vec<u8>> =
            wanted.iter().map(|t| (*t, serve(t))).collect();
        let proof = with_tiles(size, root, &fetched, prove).unwrap();
        let leaf = tree::record_hash(&entries[517]);
        tree::check_record(&proof, size, root, 517, leaf).unwrap();
        let old = tiles_read_by(size, root, |r| tlog_tiles::tree_hash(300, r));
        for t in &old {
            fetched.entry(*t).or_insert_with(|| serve(t));
        }
        let tampered = wanted[0];
        fetched.get_mut(&tampered).unwrap()[0] ^= 1;
        assert!(with_tiles(size, root, &fetched, prove).is_err());
    }

    #[test]
    fn bundles_round_trip_and_refuse_garbage() {
        let entries = vec![b"a".to_vec(), vec![], vec![7u8; 300]];
        let b = bundle(&entries).unwrap();
        assert_eq!(&b[..3], &[0, 1, b'a']);
        assert_eq!(bundle(&[vec![0u8; MAX_ENTRY + 1]]), None);
        assert_eq!(unbundle(&b).unwrap(), entries);
        assert_eq!(unbundle(&b[..b.len() - 1]), None);
        assert_eq!(unbundle(&[0]), None);
    }
}
