//! Cache management: create, configure (including key rotation), info,
//! destroy, and deleting one path.

use axum::extract::{Path, State};
use axum::Json;
use provenix_policy::validate_cache_name;
use provenix_provenance::cache_info::{CacheInfo, SigningKeyInfo};
use provenix_provenance::store_path::{validate_hash_part, validate_store_dir};
use provenix_provenance::{PublicKey, SecretKey, DEFAULT_STORE_DIR};
use serde::Deserialize;
use std::sync::Arc;

use crate::auth::Auth;
use crate::binary_cache::cache_for_pull;
use crate::db::caches::{CacheRow, NewCache};
use crate::error::{ApiError, ApiResult};
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
    pub rotate_keypair: Option<RotateKeypair>,
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

fn check_name(cache: &str) -> ApiResult<()> {
    validate_cache_name(cache)
        .map_err(|e| ApiError::bad_request("invalid-cache-name", e.to_string()))
}

fn parse_secret(s: &str) -> ApiResult<SecretKey> {
    SecretKey::parse(s).map_err(|e| {
        ApiError::bad_request(
            "invalid-keypair",
            format!("keypair is not a Nix secret key (NAME:BASE64): {e}"),
        )
    })
}

fn check_settings(
    priority: i64,
    store_dir: &str,
    retention: Option<i64>,
    upstream: &[String],
) -> ApiResult<()> {
    if !(0..=10_000).contains(&priority) {
        return Err(ApiError::bad_request(
            "invalid-priority",
            "priority must be between 0 and 10000",
        ));
    }
    validate_store_dir(store_dir)
        .map_err(|e| ApiError::bad_request("invalid-store-dir", e.to_string()))?;
    if retention.is_some_and(|r| r < 0) {
        return Err(ApiError::bad_request(
            "invalid-retention",
            "retention period must not be negative",
        ));
    }
    if upstream
        .iter()
        .any(|k| k.is_empty() || k.contains(char::is_whitespace) || k.contains(':'))
    {
        return Err(ApiError::bad_request(
            "invalid-upstream-key",
            "upstream key names are names like cache.nixos.org-1",
        ));
    }
    Ok(())
}

async fn info_of(state: &AppState, c: &CacheRow) -> ApiResult<CacheInfo> {
    let keys = state.db.signing_keys(c.id, crate::now()).await?;
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
        public_key: signing_keys
            .first()
            .map(|k| k.public_key.clone())
            .unwrap_or_default(),
        signing_keys,
        substituter_endpoint: format!("{}{}", state.substituter_endpoint(), c.name),
        api_endpoint: state.api_endpoint.clone(),
    })
}

/// The cache if it exists and the caller holds some permission on it or it
/// is public; otherwise the uniform "no such cache".
pub(crate) async fn visible_cache(
    state: &AppState,
    auth: &Auth,
    cache: &str,
) -> ApiResult<CacheRow> {
    check_name(cache)?;
    match state.db.cache_by_name(cache).await? {
        Some(c) if c.is_public || !auth.permission(cache).is_empty() => Ok(c),
        _ => Err(ApiError::no_such_cache(cache)),
    }
}

pub async fn info(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(cache): Path<String>,
) -> ApiResult<Json<CacheInfo>> {
    let c = visible_cache(&state, &auth, &cache).await?;
    Ok(Json(info_of(&state, &c).await?))
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(cache): Path<String>,
    Json(req): Json<CreateCache>,
) -> ApiResult<Json<CacheInfo>> {
    check_name(&cache)?;
    if !auth.permission(&cache).create_cache {
        return Err(ApiError::forbidden(format!(
            "your token may not create cache {cache:?} (needs --create-cache)"
        )));
    }
    check_settings(
        req.priority,
        &req.store_dir,
        req.retention_period,
        &req.upstream_cache_key_names,
    )?;
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
            key: &key,
        })
        .await?;
    let c = created.ok_or_else(|| {
        ApiError::conflict("cache-exists", format!("cache {cache:?} already exists"))
    })?;
    tracing::info!(cache = %cache, by = auth.subject(), "cache created");
    Ok(Json(info_of(&state, &c).await?))
}

pub async fn configure(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(cache): Path<String>,
    Json(req): Json<ConfigureCache>,
) -> ApiResult<Json<CacheInfo>> {
    let mut c = visible_cache(&state, &auth, &cache).await?;
    let perm = auth.permission(&cache);
    let touches_config = req.is_public.is_some()
        || req.priority.is_some()
        || req.store_dir.is_some()
        || req.upstream_cache_key_names.is_some()
        || req.rotate_keypair.is_some();
    let touches_retention = req.retention_period.is_some() || req.reset_retention_period;
    if touches_config && !perm.configure_cache {
        return Err(ApiError::forbidden(format!(
            "your token may not configure cache {cache:?} (needs --configure-cache)"
        )));
    }
    if touches_retention && !perm.configure_cache_retention {
        return Err(ApiError::forbidden(format!(
            "your token may not change the retention of cache {cache:?} (needs --configure-cache-retention)"
        )));
    }
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
    // Validate the new key before changing anything.
    let new_key = match &req.rotate_keypair {
        Some(r) => {
            if r.overlap < 0 {
                return Err(ApiError::bad_request(
                    "invalid-overlap",
                    "overlap must not be negative",
                ));
            }
            let key = match &r.keypair {
                Some(s) => parse_secret(s)?,
                None => {
                    let n = state.db.key_count(c.id).await? + 1;
                    SecretKey::generate(&format!("{cache}-{n}")).map_err(ApiError::internal)?
                }
            };
            let current: Vec<PublicKey> = state
                .db
                .signing_keys(c.id, crate::now())
                .await?
                .iter()
                .filter_map(|k| PublicKey::parse(&k.public_key).ok())
                .collect();
            if r.overlap > 0 && current.iter().any(|k| k.name() == key.name()) {
                // Nix keys trusted keys by name: two live keys with one name
                // would make one of them unverifiable.
                return Err(ApiError::bad_request(
                    "duplicate-key-name",
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
    state.db.update_cache(&c).await?;
    if let Some((key, overlap)) = new_key {
        state.db.rotate_key(c.id, &key, overlap).await?;
        tracing::info!(cache = %cache, by = auth.subject(), key = key.name(), overlap, "cache key rotated");
    }
    Ok(Json(info_of(&state, &c).await?))
}

pub async fn destroy(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(cache): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let c = visible_cache(&state, &auth, &cache).await?;
    if !auth.permission(&cache).destroy_cache {
        return Err(ApiError::forbidden(format!(
            "your token may not destroy cache {cache:?} (needs --destroy-cache)"
        )));
    }
    state.db.destroy_cache(c.id).await?;
    tracing::info!(cache = %cache, by = auth.subject(), "cache destroyed");
    Ok(Json(serde_json::json!({ "destroyed": cache })))
}

pub async fn delete_path(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path((cache, hash)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let c = cache_for_pull(&state, &auth, &cache).await?;
    if !auth.permission(&cache).delete {
        return Err(ApiError::forbidden(format!(
            "your token may not delete paths from {cache:?} (needs --delete)"
        )));
    }
    validate_hash_part(&hash)
        .map_err(|e| ApiError::bad_request("invalid-store-path", e.to_string()))?;
    if !state.db.delete_object(c.id, &hash).await? {
        return Err(ApiError::not_found(
            "no-such-path",
            format!("{hash} is not in cache {cache:?}"),
        ));
    }
    tracing::info!(cache = %cache, path = %hash, by = auth.subject(), "path deleted");
    Ok(Json(serde_json::json!({ "deleted": hash })))
}
