//! Cache management: create, configure (including key rotation), info,
//! destroy, and deleting one path.

use axum::extract::{Path, State};
use axum::Json;
use provenix_policy::{limits, Action};
use provenix_provenance::cache_info::{
    CacheInfo, CacheListing, LogInfo, LogKeyInfo, SigningKeyInfo, WitnessInfo,
};
use provenix_provenance::store_path::{validate_hash_part, validate_store_dir};
use provenix_provenance::{ErrorCode, PublicKey, SecretKey, DEFAULT_STORE_DIR};
use serde::Deserialize;
use std::sync::Arc;

use crate::access;
use crate::db::caches::{CacheChange, CacheRow, NewCache};
use crate::error::{ApiError, ApiResult};
use crate::identity::caller::Caller;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCache {
    #[serde(default)]
    pub is_public: bool,
    #[serde(default = "default_priority")]
    pub priority: i64,
    #[serde(default = "default_store_dir")]
    pub store_dir: String,
    #[serde(default = "default_upstream")]
    pub upstream_cache_key_names: Vec<String>,
    pub retention_period: Option<i64>,
    /// Bytes; none: no limit of the cache's own.
    pub max_stored_size: Option<i64>,
    /// A secret key in Nix's format to import; generated when absent.
    pub keypair: Option<String>,
}

fn default_priority() -> i64 {
    41
}
fn default_store_dir() -> String {
    DEFAULT_STORE_DIR.into()
}
fn default_upstream() -> Vec<String> {
    vec!["cache.nixos.org-1".into()]
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigureCache {
    pub is_public: Option<bool>,
    pub priority: Option<i64>,
    pub store_dir: Option<String>,
    pub upstream_cache_key_names: Option<Vec<String>>,
    pub retention_period: Option<i64>,
    #[serde(default)]
    pub reset_retention_period: bool,
    pub max_stored_size: Option<i64>,
    #[serde(default)]
    pub reset_max_stored_size: bool,
    pub rotate_keypair: Option<RotateKeypair>,
    pub rotate_log_key: Option<RotateLogKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateLogKey {
    /// Seconds the previous log key keeps signing checkpoints beside the
    /// new one: clients and witnesses that trust it see both signatures
    /// and may take the new key on.
    #[serde(default)]
    pub overlap: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKeypair {
    /// Seconds the previous key keeps signing beside the new one.
    #[serde(default)]
    pub overlap: i64,
    /// A secret key in Nix's format; generated when absent.
    pub keypair: Option<String>,
}

fn parse_secret(s: &str) -> ApiResult<SecretKey> {
    SecretKey::parse(s).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidKeypair,
            format!("keypair is not a Nix secret key (NAME:BASE64): {e}"),
        )
    })
}

fn check_max_stored_size(bytes: Option<i64>) -> ApiResult<()> {
    match bytes {
        Some(b) => provenix_policy::retention::check_max_stored_size(b)
            .map_err(|e| ApiError::new(e.code, e.message)),
        None => Ok(()),
    }
}

fn check_settings(
    priority: i64,
    store_dir: &str,
    retention: Option<i64>,
    upstream: &[String],
) -> ApiResult<()> {
    if !(0..=10_000).contains(&priority) {
        return Err(ApiError::new(
            ErrorCode::InvalidPriority,
            "priority must be between 0 and 10000",
        ));
    }
    validate_store_dir(store_dir)
        .map_err(|e| ApiError::new(ErrorCode::InvalidStoreDir, e.to_string()))?;
    if let Some(r) = retention {
        limits::check_retention(r).map_err(|e| ApiError::new(e.code, e.message))?;
    }
    if upstream
        .iter()
        .any(|k| k.is_empty() || k.contains(char::is_whitespace) || k.contains(':'))
    {
        return Err(ApiError::new(
            ErrorCode::InvalidUpstreamKey,
            "upstream key names are names like cache.nixos.org-1",
        ));
    }
    Ok(())
}

async fn info_of(state: &AppState, c: &CacheRow) -> ApiResult<CacheInfo> {
    let keys = state.db.cache_keys(c.id, crate::clock::now()).await?;
    let signing_keys: Vec<SigningKeyInfo> = keys
        .iter()
        .map(|k| SigningKeyInfo {
            public_key: k.public_key.clone(),
            retire_at: k.retire_at,
        })
        .collect();
    Ok(CacheInfo {
        name: c.name.clone(),
        is_public: c.is_public,
        priority: c.priority,
        store_dir: c.store_dir.clone(),
        upstream_cache_key_names: c.upstream_cache_key_names.clone(),
        retention_period: c.retention_period,
        max_stored_size: state.db.max_stored_size(c.id).await?,
        public_key: signing_keys
            .first()
            .map(|k| k.public_key.clone())
            .unwrap_or_default(),
        signing_keys,
        substituter_endpoint: format!("{}{}", state.substituter_endpoint(), c.name),
        api_endpoint: state.api_endpoint.clone(),
        transparency_log: transparency_log(state, c).await?,
    })
}

/// The cache's log: its origin, where it is served, and its verifier keys.
async fn transparency_log(state: &AppState, c: &CacheRow) -> ApiResult<Option<LogInfo>> {
    let keys = state.db.log_verifier_keys(c.id).await?;
    let Some((origin, _, _)) = keys.first() else {
        return Ok(None);
    };
    Ok(Some(LogInfo {
        origin: origin.clone(),
        url: format!("{}{}/tlog", state.substituter_endpoint(), c.name),
        verifier_keys: keys
            .iter()
            .map(|(_, key, retire_at)| LogKeyInfo {
                verifier_key: key.clone(),
                retire_at: *retire_at,
            })
            .collect(),
        witnesses: state
            .config
            .log
            .witnesses
            .iter()
            .map(|w| WitnessInfo {
                name: w.name.clone(),
                verifier_key: w.verifier_key.clone(),
            })
            .collect(),
        witness_quorum: state.config.log.quorum(),
    }))
}

/// `GET /_api/v1/caches`: every cache the caller may see, with its rights
/// there; a private cache the caller has no right on is not listed.
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<Vec<CacheListing>>> {
    let mut caches = state.db.all_caches().await?;
    caches.sort_by(|a, b| a.name.cmp(&b.name));
    let listed = caches
        .into_iter()
        .filter_map(|c| {
            let rights = access::listing(&state, &caller, &c)?;
            Some(CacheListing {
                name: c.name,
                is_public: c.is_public,
                rights: rights.iter().map(|a| a.name().to_string()).collect(),
            })
        })
        .collect();
    Ok(Json(listed))
}

pub async fn info(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(cache): Path<String>,
) -> ApiResult<Json<CacheInfo>> {
    let c = access::authorize(&state, &caller, Action::ReadInfo, &cache).await?;
    Ok(Json(info_of(&state, &c).await?))
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(cache): Path<String>,
    Json(req): Json<CreateCache>,
) -> ApiResult<Json<CacheInfo>> {
    access::authorize_create(&state, &caller, &cache)?;
    check_settings(
        req.priority,
        &req.store_dir,
        req.retention_period,
        &req.upstream_cache_key_names,
    )?;
    check_max_stored_size(req.max_stored_size)?;
    let key = match &req.keypair {
        Some(s) => parse_secret(s)?,
        None => SecretKey::generate(&format!("{cache}-1")).map_err(ApiError::internal)?,
    };
    let created = state
        .db
        .create_cache(NewCache {
            name: &cache,
            is_public: req.is_public,
            priority: req.priority,
            store_dir: &req.store_dir,
            upstream_cache_key_names: &req.upstream_cache_key_names,
            retention_period: req.retention_period,
            max_stored_size: req.max_stored_size,
            key: &key,
            log_origin: &provenix_provenance::tlog::checkpoint::origin(&state.api_endpoint, &cache),
        })
        .await?;
    let c = created.ok_or_else(|| {
        ApiError::new(
            ErrorCode::CacheExists,
            format!("cache {cache:?} already exists"),
        )
    })?;
    tracing::info!(cache = %cache, by = caller.subject(), "cache created");
    Ok(Json(info_of(&state, &c).await?))
}

pub async fn configure(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(cache): Path<String>,
    Json(req): Json<ConfigureCache>,
) -> ApiResult<Json<CacheInfo>> {
    let touches_config = req.is_public.is_some()
        || req.priority.is_some()
        || req.store_dir.is_some()
        || req.upstream_cache_key_names.is_some()
        || req.rotate_keypair.is_some()
        || req.rotate_log_key.is_some();
    let touches_retention = req.retention_period.is_some()
        || req.reset_retention_period
        || req.max_stored_size.is_some()
        || req.reset_max_stored_size;
    let shortens_to_deletion = req
        .retention_period
        .is_some_and(limits::retention_is_deletion);
    // A request that changes nothing still needs the cache to be visible.
    let mut c = access::authorize(&state, &caller, Action::ReadInfo, &cache).await?;
    // A limit below what the cache holds now evicts at the next GC: a
    // deletion, as a retention under a day is (found by the attack review).
    let shrinks_to_deletion = match req.max_stored_size {
        Some(limit) => limit < state.db.cache_stored_size(c.id).await?,
        None => false,
    };
    let shortens_to_deletion = shortens_to_deletion || shrinks_to_deletion;
    for (touches, action) in [
        (touches_config, Action::Configure),
        (touches_retention, Action::ConfigureRetention),
        (shortens_to_deletion, Action::ConfigureShortRetention),
    ] {
        if touches {
            c = access::check(&state, &caller, action, &cache, Some(c))?;
        }
    }
    let change = CacheChange {
        is_public: req.is_public,
        priority: req.priority,
        store_dir: req.store_dir.clone(),
        upstream_cache_key_names: req.upstream_cache_key_names.clone(),
        retention_period: req.retention_period,
        reset_retention_period: req.reset_retention_period,
        max_stored_size: req.max_stored_size,
        reset_max_stored_size: req.reset_max_stored_size,
    };
    if let Some(v) = req.is_public {
        c.is_public = v;
    }
    if let Some(v) = req.priority {
        c.priority = v;
    }
    if let Some(v) = req.store_dir {
        c.store_dir = v;
    }
    if let Some(v) = req.upstream_cache_key_names {
        c.upstream_cache_key_names = v;
    }
    if let Some(v) = req.retention_period {
        c.retention_period = Some(v);
    }
    if req.reset_retention_period {
        c.retention_period = None;
    }
    check_settings(
        c.priority,
        &c.store_dir,
        c.retention_period,
        &c.upstream_cache_key_names,
    )?;
    check_max_stored_size(req.max_stored_size)?;
    if req.max_stored_size.is_some() && req.reset_max_stored_size {
        return Err(ApiError::new(
            ErrorCode::InvalidMaxStoredSize,
            "max_stored_size and reset_max_stored_size exclude each other",
        ));
    }
    // Validate the new key before changing anything.
    let new_key = match &req.rotate_keypair {
        Some(r) => {
            limits::check_key_overlap(r.overlap).map_err(|e| ApiError::new(e.code, e.message))?;
            let key = match &r.keypair {
                Some(s) => parse_secret(s)?,
                None => {
                    let n = state.db.key_count(c.id).await? + 1;
                    SecretKey::generate(&format!("{cache}-{n}")).map_err(ApiError::internal)?
                }
            };
            let current: Vec<PublicKey> = state
                .db
                .cache_keys(c.id, crate::clock::now())
                .await?
                .iter()
                .filter_map(|k| PublicKey::parse(&k.public_key).ok())
                .collect();
            limits::check_live_keys(current.len(), r.overlap)
                .map_err(|e| ApiError::new(e.code, e.message))?;
            if r.overlap > 0 && current.iter().any(|k| k.name() == key.name()) {
                // Nix keys trusted keys by name: two live keys with one name
                // would make one of them unverifiable.
                return Err(ApiError::new(
                    ErrorCode::DuplicateKeyName,
                    format!(
                        "a signing key named {:?} is still live; give the new key another name",
                        key.name()
                    ),
                ));
            }
            Some((key, r.overlap))
        }
        None => None,
    };
    if let Some(r) = &req.rotate_log_key {
        limits::check_key_overlap(r.overlap).map_err(|e| ApiError::new(e.code, e.message))?;
        let now = crate::clock::now();
        let live = state
            .db
            .log_verifier_keys(c.id)
            .await?
            .iter()
            .filter(|(_, _, retire_at)| retire_at.is_none_or(|t| t > now))
            .count();
        limits::check_live_keys(live, r.overlap).map_err(|e| ApiError::new(e.code, e.message))?;
    }
    // Rotations first: each checks its limits again under the cache's
    // lock (a concurrent rotation may have passed the checks above too),
    // and a refusal then leaves the settings unchanged.
    let refused = |e: limits::OutOfRange| ApiError::new(e.code, e.message);
    if let Some(r) = &req.rotate_log_key {
        let vkey = state
            .db
            .rotate_log_key(c.id, r.overlap)
            .await?
            .map_err(refused)?;
        tracing::info!(cache = %cache, by = caller.subject(), key = %vkey, overlap = r.overlap, "log key rotated");
    }
    if let Some((key, overlap)) = new_key {
        state
            .db
            .rotate_key(c.id, &key, overlap)
            .await?
            .map_err(refused)?;
        tracing::info!(cache = %cache, by = caller.subject(), key = key.name(), overlap, "cache key rotated");
    }
    state.db.update_cache(c.id, &change).await?;
    // What the cache is now, concurrent changes included.
    let c = state
        .db
        .cache_by_name(&cache)
        .await?
        .ok_or_else(|| ApiError::no_such_cache(&cache))?;
    Ok(Json(info_of(&state, &c).await?))
}

pub async fn destroy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(cache): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let c = access::authorize(&state, &caller, Action::Destroy, &cache).await?;
    state.db.destroy_cache(c.id).await?;
    // The log went with the cache; its stored tiles are reclaimed here
    // (a failure leaves only unreachable objects: the id is never reused).
    if let Err(e) = crate::serve::stored_tiles::remove_all(&state, c.id).await {
        tracing::warn!(cache = %cache, "stored log tiles not removed: {e:#}");
    }
    tracing::info!(cache = %cache, by = caller.subject(), "cache destroyed");
    Ok(Json(serde_json::json!({ "destroyed": cache })))
}

pub async fn delete_path(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((cache, hash)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let c = access::authorize(&state, &caller, Action::DeletePath, &cache).await?;
    validate_hash_part(&hash)
        .map_err(|e| ApiError::new(ErrorCode::InvalidStorePath, e.to_string()))?;
    if !state.db.delete_path(c.id, &hash, caller.subject()).await? {
        return Err(ApiError::new(
            ErrorCode::NoSuchPath,
            format!("{hash} is not in cache {cache:?}"),
        ));
    }
    tracing::info!(cache = %cache, path = %hash, by = caller.subject(), "path deleted");
    Ok(Json(serde_json::json!({ "deleted": hash })))
}
