//! Signed narinfo bodies, remembered for the paths asked most.
//!
//! An ed25519 signature was a fifth of a narinfo's server time once the
//! database lookup became cheap. A body depends only on the path's row (a
//! row's fields never change; a revocation or deletion removes the row and a
//! re-upload makes a new one), the cache's store dir and the keys signing
//! now, so it is kept under exactly those. The lookup that decides whether
//! the path is served at all still runs on every request: a revoked path
//! answers 404 at once whatever is remembered here.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

/// Bodies kept (about 1 KB each); the whole map is dropped when full, which
/// is simpler than an LRU and costs one re-signing per path.
const CAPACITY: usize = 2048;

#[derive(Hash, PartialEq, Eq, Clone, Copy)]
pub struct BodyKey {
    pub object_id: i64,
    pub keys_version: i64,
    /// How many of that version's keys sign now: the set only shrinks as
    /// rotation overlaps end, so the count names it.
    pub signing_keys: usize,
}

#[derive(Default)]
pub struct SignedNarinfos {
    bodies: Mutex<HashMap<BodyKey, (String, Bytes)>>,
}

impl SignedNarinfos {
    /// The body, shared (no copy), if one was signed under `key`.
    pub fn get(&self, key: &BodyKey, store_dir: &str) -> Option<Bytes> {
        let bodies = self.bodies.lock().expect("not poisoned");
        match bodies.get(key) {
            Some((dir, body)) if dir == store_dir => Some(body.clone()),
            _ => None,
        }
    }

    pub fn insert(&self, key: BodyKey, store_dir: &str, body: Bytes) {
        let mut bodies = self.bodies.lock().expect("not poisoned");
        if bodies.len() >= CAPACITY {
            bodies.clear();
        }
        bodies.insert(key, (store_dir.to_string(), body));
    }
}
