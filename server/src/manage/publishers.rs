//! Trusted publishers of a cache, managed by anyone with configure-cache on it.

use axum::extract::{Path, State};
use axum::Json;
use provenix_policy::publisher::RegisteredPublisher;
use provenix_policy::{Action, Publisher};
use provenix_provenance::signing::PublicKey;
use provenix_provenance::ErrorCode;
use sha2::Digest;
use std::sync::Arc;

use crate::access;
use crate::db::caches::CacheRow;
use crate::error::{ApiError, ApiResult};
use crate::identity::caller::Caller;
use crate::state::AppState;

pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(cache): Path<String>,
) -> ApiResult<Json<Vec<RegisteredPublisher>>> {
    let c = access::authorize(&state, &caller, Action::ManagePublishers, &cache).await?;
    let rows = state.db.publishers(c.id).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| RegisteredPublisher {
                id: r.id,
                publisher: r.publisher,
                created_by: r.created_by,
                created_at: r.created_at,
            })
            .collect(),
    ))
}

pub async fn add(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(cache): Path<String>,
    Json(publisher): Json<Publisher>,
) -> ApiResult<Json<RegisteredPublisher>> {
    let c = access::authorize(&state, &caller, Action::ManagePublishers, &cache).await?;
    publisher
        .validate()
        .map_err(|e| ApiError::new(ErrorCode::InvalidPublisher, e.to_string()))?;
    let Some(issuer) = publisher.issuer() else {
        return add_nix_key(&state, &caller, &c, publisher).await;
    };
    if !state.config.oidc.issuers.iter().any(|i| i.name == issuer) {
        let known: Vec<&str> = state
            .config
            .oidc
            .issuers
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        return Err(ApiError::new(
            ErrorCode::UnknownIssuer,
            format!("this server has no [[oidc.issuers]] named {issuer:?} (configured: {known:?})"),
        )
        .with_status(axum::http::StatusCode::BAD_REQUEST));
    }
    let id = state
        .db
        .add_publisher(c.id, &publisher, caller.subject())
        .await?;
    tracing::info!(cache = %c.name, by = caller.subject(), id, publisher = %publisher.describe(), "trusted publisher added");
    Ok(Json(RegisteredPublisher {
        id,
        publisher,
        created_by: caller.subject().to_string(),
        created_at: crate::clock::now(),
    }))
}

/// A Nix key for `nix copy --to` uploads: registered with its upload key
/// row (logged), one key per subject and cache.
async fn add_nix_key(
    state: &AppState,
    caller: &Caller,
    c: &CacheRow,
    publisher: Publisher,
) -> ApiResult<Json<RegisteredPublisher>> {
    let Publisher::NixKey(key) = &publisher else {
        unreachable!("only a Nix key has no issuer");
    };
    let parsed = PublicKey::parse(&key.nix_key)
        .map_err(|e| ApiError::new(ErrorCode::InvalidPublisher, e.to_string()))?;
    // One key id per public key, whatever name it is registered under.
    let key_id = format!(
        "nix-{}",
        &hex::encode(sha2::Sha256::digest(
            parsed.to_nix_string().split(':').nth(1).unwrap_or_default()
        ))[..20]
    );
    let id = match state
        .db
        .add_nix_key(c.id, &publisher, key, &key_id, caller.subject())
        .await?
    {
        Ok(id) => id,
        Err(existing) => {
            return Err(ApiError::new(
                ErrorCode::KeyReused,
                format!(
                    "this Nix key is registered already (upload key {existing}) for another subject or cache: register a key of its own for each uploader and cache (nix key generate-secret)"
                ),
            ))
        }
    };
    tracing::info!(cache = %c.name, by = caller.subject(), id, key_id, publisher = %publisher.describe(), "Nix key registered");
    Ok(Json(RegisteredPublisher {
        id,
        publisher,
        created_by: caller.subject().to_string(),
        created_at: crate::clock::now(),
    }))
}

pub async fn remove(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((cache, id)): Path<(String, i64)>,
) -> ApiResult<Json<serde_json::Value>> {
    let c = access::authorize(&state, &caller, Action::ManagePublishers, &cache).await?;
    if !state.db.remove_publisher(c.id, id).await? {
        return Err(ApiError::new(
            ErrorCode::NoSuchPublisher,
            format!("cache {cache:?} has no trusted publisher {id}"),
        ));
    }
    tracing::info!(cache = %c.name, by = caller.subject(), id, "trusted publisher removed");
    Ok(Json(serde_json::json!({ "removed": id })))
}
