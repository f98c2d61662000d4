//! What the pin endpoints take and answer: shared by server and client.

use serde::{Deserialize, Serialize};

/// `PUT /_api/v1/cache-config/{cache}/pins/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// The full store path, in the cache's store directory.
    pub store_path: String,
    /// How many of the name's newest revisions to keep (default 1: a
    /// re-pin replaces the previous path).
    #[serde(default = "default_keep_revisions")]
    pub keep_revisions: i64,
}

pub fn default_keep_revisions() -> i64 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinRevision {
    pub revision: i64,
    pub store_path: String,
    pub created_at: i64,
    /// Whether the cache still holds the path (a pinned path can still be
    /// deleted by hand or revoked).
    pub held: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pin {
    pub name: String,
    pub keep_revisions: i64,
    /// Newest first.
    pub revisions: Vec<PinRevision>,
}

/// The answer to a pin: the pin as it now is, and whether anything changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinAnswer {
    /// False when the name's newest revision was this path already, with
    /// the same `keep_revisions` (nothing was recorded).
    pub changed: bool,
    pub pin: Pin,
}

/// One recorded change of a pin (`GET /_api/v1/cache/{cache}/pin-changes`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinChange {
    pub id: i64,
    pub name: String,
    /// `pin` or `remove`.
    pub action: String,
    pub store_path: Option<String>,
    pub keep_revisions: Option<i64>,
    /// Store paths of the revisions the change released.
    pub dropped: Vec<String>,
    /// The subject of the token that made it.
    pub actor: String,
    pub created_at: i64,
}
