//! The caches' Nix signing keys, parsed once per process and reused for every
//! narinfo until the cache's keys change. Reading and parsing them per request
//! was a third of the narinfo's database work.

use provenix_provenance::SecretKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::db::Db;

/// A cache's keys as of one `keys_version` (the newest key's id).
pub struct CacheKeys {
    version: i64,
    /// Each key with the time it stops signing (None: never).
    keys: Vec<(SecretKey, Option<i64>)>,
}

impl CacheKeys {
    /// The keys that sign at `now`: the current one and, during a rotation's
    /// overlap, the old ones.
    pub fn signing_at(&self, now: i64) -> impl Iterator<Item = &SecretKey> {
        self.keys
            .iter()
            .filter(move |(_, retire_at)| retire_at.is_none_or(|t| t > now))
            .map(|(k, _)| k)
    }
}

#[derive(Default)]
pub struct CacheKeyRing {
    // One entry per cache that served a narinfo since the start: a handful.
    by_cache: Mutex<HashMap<i64, Arc<CacheKeys>>>,
}

impl CacheKeyRing {
    /// The cache's keys at `version`, loaded from the database if this
    /// process has not seen that version yet.
    pub async fn keys(
        &self,
        db: &Db,
        cache_id: i64,
        version: i64,
    ) -> anyhow::Result<Arc<CacheKeys>> {
        if let Some(k) = self.by_cache.lock().expect("not poisoned").get(&cache_id) {
            if k.version == version {
                return Ok(k.clone());
            }
        }
        let mut keys = Vec::new();
        for row in db.cache_keys(cache_id, crate::clock::now()).await? {
            keys.push((SecretKey::parse(&row.secret)?, row.retire_at));
        }
        let loaded = Arc::new(CacheKeys { version, keys });
        self.by_cache
            .lock()
            .expect("not poisoned")
            .insert(cache_id, loaded.clone());
        Ok(loaded)
    }
}
