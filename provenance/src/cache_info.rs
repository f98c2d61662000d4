//! What `GET /_api/v1/cache-config/{cache}` answers: shared by server and client.

use serde::{Deserialize, Serialize};

/// One cache of `GET /_api/v1/caches`: the caches the caller may see, with
/// what the caller may do on each (`provenix_policy::Action::name`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CacheListing {
    pub name: String,
    pub is_public: bool,
    pub rights: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheInfo {
    pub name: String,
    pub is_public: bool,
    pub priority: i64,
    pub store_dir: String,
    pub upstream_cache_key_names: Vec<String>,
    /// Seconds; null follows the server default.
    pub retention_period: Option<i64>,
    /// Bytes of compressed NAR the cache may hold before GC evicts its least
    /// recently used unpinned paths; null: no limit of its own.
    #[serde(default)]
    pub max_stored_size: Option<i64>,
    /// The newest key; clients should trust it.
    pub public_key: String,
    /// Every key that signs now, newest first, with when it stops (Unix time).
    pub signing_keys: Vec<SigningKeyInfo>,
    pub substituter_endpoint: String,
    pub api_endpoint: String,
    /// The cache's transparency log (docs/transparency-log.md); null from
    /// a server without one.
    #[serde(default)]
    pub transparency_log: Option<LogInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogInfo {
    /// The checkpoints' origin line.
    pub origin: String,
    /// The tlog-tiles prefix: `<url>/checkpoint`, `<url>/tile/...`.
    pub url: String,
    /// signed-note verifier keys, newest first, with when each stops
    /// signing (Unix time; null: current).
    pub verifier_keys: Vec<LogKeyInfo>,
    /// The witnesses asked to cosign its checkpoints, and how many must
    /// before one is published.
    #[serde(default)]
    pub witnesses: Vec<WitnessInfo>,
    #[serde(default)]
    pub witness_quorum: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WitnessInfo {
    pub name: String,
    /// Its cosignature verifier key.
    pub verifier_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogKeyInfo {
    pub verifier_key: String,
    pub retire_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SigningKeyInfo {
    pub public_key: String,
    pub retire_at: Option<i64>,
}
