//! The log's Merkle tree as stored hashes (the scheme of Go's checksum
//! database): appending record `n` stores its leaf hash and the hash of
//! every perfect subtree it completes, each at `stored_hash_index(level,
//! k)`. Roots, tiles and proofs are computed from stored hashes alone, so
//! the server keeps them in a table and hands the ones a computation needs
//! to these functions.

use std::cell::RefCell;
use std::collections::HashMap;

pub use tlog_tiles::{
    check_record, check_tree, record_hash, stored_hash_index, RecordProof, TreeProof,
};
use tlog_tiles::{Error, Hash, HashReader};

/// Stored hashes by index: the ones a computation was given. Reading one
/// it was not given fails and is remembered (see [`indexes_read_by`]).
#[derive(Default, Clone)]
pub struct Hashes {
    known: HashMap<u64, Hash>,
    missing: RefCell<Vec<u64>>,
}

impl Hashes {
    pub fn new(known: impl IntoIterator<Item = (u64, Hash)>) -> Hashes {
        Hashes {
            known: known.into_iter().collect(),
            missing: RefCell::default(),
        }
    }

    pub fn get(&self, index: u64) -> Option<Hash> {
        self.known.get(&index).copied()
    }

    pub fn insert(&mut self, index: u64, hash: Hash) {
        self.known.insert(index, hash);
    }
}

impl HashReader for Hashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Error> {
        let mut found = Vec::with_capacity(indexes.len());
        for i in indexes {
            match self.known.get(i) {
                Some(h) => found.push(*h),
                None => self.missing.borrow_mut().push(*i),
            }
        }
        if found.len() == indexes.len() {
            Ok(found)
        } else {
            Err(Error::IndexesNotInTree)
        }
    }
}

/// The stored hash indexes `f` reads (a proof, a tile, a root): run it
/// once on nothing to learn them, fetch them, then run it on those. Every
/// computation here reads its hashes in one call, so once is enough.
pub fn indexes_read_by<T>(f: impl Fn(&Hashes) -> Result<T, Error>) -> Vec<u64> {
    let probe = Hashes::default();
    let _ = f(&probe);
    let mut wanted = probe.missing.into_inner();
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// The stored hashes appending to a tree of `size` records reads: the
/// roots of the perfect subtrees the tree is made of.
pub fn edge_indexes(size: u64) -> Vec<u64> {
    tlog_tiles::sub_tree_index(0, size, vec![])
}

/// What appending records makes: the stored hashes to keep (index, hash),
/// in index order, and the new root.
#[derive(Debug)]
pub struct Appended {
    pub stored: Vec<(u64, Hash)>,
    pub size: u64,
    pub root: Hash,
}

/// Appends `entries` (each a record's bytes) to a tree of `size` records
/// whose [`edge_indexes`] hashes are in `edge`.
pub fn append(size: u64, entries: &[Vec<u8>], mut edge: Hashes) -> Result<Appended, Error> {
    let mut stored = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let n = size + i as u64;
        let hashes = tlog_tiles::stored_hashes(n, entry, &edge)?;
        let first = tlog_tiles::stored_hash_count(n);
        for (k, h) in hashes.into_iter().enumerate() {
            let index = first + k as u64;
            edge.insert(index, h);
            stored.push((index, h));
        }
    }
    let size = size + entries.len() as u64;
    let root = tlog_tiles::tree_hash(size, &edge)?;
    Ok(Appended { stored, size, root })
}

/// The root of the empty tree (RFC 6962: the hash of nothing).
pub fn empty_root() -> Hash {
    tlog_tiles::EMPTY_HASH
}

/// The root of a tree of `size` records, from its stored hashes.
pub fn root(size: u64, hashes: &Hashes) -> Result<Hash, Error> {
    tlog_tiles::tree_hash(size, hashes)
}

/// The inclusion proof of record `index` in the tree of `size` records.
pub fn prove_inclusion(size: u64, index: u64, hashes: &Hashes) -> Result<RecordProof, Error> {
    tlog_tiles::prove_record(size, index, hashes)
}

/// The consistency proof from the tree of `old` records to that of `size`.
pub fn prove_consistency(size: u64, old: u64, hashes: &Hashes) -> Result<TreeProof, Error> {
    tlog_tiles::prove_tree(size, old, hashes)
}

/// A tree rebuilt from its entries alone, batch by batch, holding only
/// its right edge (what the next append reads): how `provenixd --mode
/// verify` recomputes a log in bounded memory and compares what it makes
/// with what the server stored.
#[derive(Default)]
pub struct Rebuild {
    pub size: u64,
    edge: HashMap<u64, Hash>,
}

impl Rebuild {
    /// Appends `entries`; returns the stored hashes they make and the root.
    pub fn append(&mut self, entries: &[Vec<u8>]) -> Result<Appended, Error> {
        let edge = Hashes::new(self.edge.iter().map(|(i, h)| (*i, *h)));
        let out = append(self.size, entries, edge)?;
        let mut known = std::mem::take(&mut self.edge);
        known.extend(out.stored.iter().copied());
        self.edge = edge_indexes(out.size)
            .into_iter()
            .filter_map(|i| known.get(&i).map(|h| (i, *h)))
            .collect();
        self.size = out.size;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn a_rebuild_keeps_only_the_edge_and_makes_the_same_tree() {
        let all = entries(600);
        let (table, root) = grow(&all, &[600]);
        let mut rebuild = Rebuild::default();
        let mut stored = HashMap::new();
        let mut last = tlog_tiles::EMPTY_HASH;
        for batch in all.chunks(256) {
            let out = rebuild.append(batch).unwrap();
            assert!(rebuild.edge.len() <= 64);
            stored.extend(out.stored);
            last = out.root;
        }
        assert_eq!((rebuild.size, last), (600, root));
        assert_eq!(stored, table);
    }

    /// RFC 6962's Merkle Tree Hash, written out as the RFC defines it.
    fn mth(leaves: &[Vec<u8>]) -> [u8; 32] {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => Sha256::digest([&[0u8][..], &leaves[0]].concat()).into(),
            n => {
                let k = n.next_power_of_two() / 2;
                let (l, r) = (mth(&leaves[..k]), mth(&leaves[k..]));
                Sha256::digest([&[1u8][..], &l, &r].concat()).into()
            }
        }
    }

    fn entries(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("entry {i}\n").into_bytes())
            .collect()
    }

    /// Grows a tree in uneven batches the way the server does: fetching
    /// only the edge each time.
    fn grow(all: &[Vec<u8>], batches: &[usize]) -> (HashMap<u64, Hash>, Hash) {
        let mut table: HashMap<u64, Hash> = HashMap::new();
        let (mut size, mut root) = (0u64, tlog_tiles::EMPTY_HASH);
        for &b in batches {
            let edge = Hashes::new(edge_indexes(size).into_iter().map(|i| (i, table[&i])));
            let batch = &all[size as usize..size as usize + b];
            let out = append(size, batch, edge).unwrap();
            table.extend(out.stored);
            (size, root) = (out.size, out.root);
        }
        (table, root)
    }

    #[test]
    fn roots_are_rfc_6962_merkle_tree_hashes_at_every_size() {
        let all = entries(300);
        for n in [1usize, 2, 3, 7, 8, 9, 255, 256, 257, 300] {
            let (_, root) = grow(&all[..n], &[n]);
            assert_eq!(root.0, mth(&all[..n]), "size {n}");
        }
        // Batches of any shape give the same tree.
        let (table, root) = grow(&all, &[1, 2, 5, 100, 1, 191]);
        assert_eq!(root.0, mth(&all));
        assert_eq!(root, super::root(300, &Hashes::new(table)).unwrap());
    }

    #[test]
    fn proofs_read_only_what_they_say_and_verify() {
        let all = entries(300);
        let (table, root) = grow(&all, &[300]);
        let fetch = |wanted: Vec<u64>| Hashes::new(wanted.into_iter().map(|i| (i, table[&i])));
        for index in [0u64, 1, 128, 255, 256, 299] {
            let wanted = indexes_read_by(|h| prove_inclusion(300, index, h));
            assert!(!wanted.is_empty() && wanted.len() < 40);
            let proof = prove_inclusion(300, index, &fetch(wanted)).unwrap();
            let leaf = record_hash(&all[index as usize]);
            check_record(&proof, 300, root, index, leaf).unwrap();
            // Another record's hash does not verify with it.
            let other = record_hash(b"not in the log\n");
            assert!(check_record(&proof, 300, root, index, other).is_err());
        }
        for old in [1u64, 7, 256, 299] {
            let (_, old_root) = grow(&all[..old as usize], &[old as usize]);
            let wanted = indexes_read_by(|h| prove_consistency(300, old, h));
            let proof = prove_consistency(300, old, &fetch(wanted)).unwrap();
            check_tree(&proof, 300, root, old, old_root).unwrap();
            let (_, forked) = grow(&entries(old as usize + 1)[1..], &[old as usize]);
            assert!(check_tree(&proof, 300, root, old, forked).is_err());
        }
    }
}
