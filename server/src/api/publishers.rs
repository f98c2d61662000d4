//! Trusted publishers of a cache, managed by anyone with configure-cache on it.

use axum::extract::{Path, State};
use axum::Json;
use provenix_policy::publisher::RegisteredPublisher;
use provenix_policy::Publisher;
use std::sync::Arc;

use crate::api::caches::visible_cache;
use crate::auth::Auth;
use crate::db::caches::CacheRow;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

async fn cache_to_configure(state: &AppState, auth: &Auth, cache: &str) -> ApiResult<CacheRow> {
    let c = visible_cache(state, auth, cache).await?;
    if !auth.permission(cache).configure_cache {
        return Err(ApiError::forbidden(format!(
            "your token may not manage the trusted publishers of cache {cache:?} (needs --configure-cache)"
        )));
    }
    Ok(c)
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(cache): Path<String>,
) -> ApiResult<Json<Vec<RegisteredPublisher>>> {
    let c = cache_to_configure(&state, &auth, &cache).await?;
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
    auth: Auth,
    Path(cache): Path<String>,
    Json(publisher): Json<Publisher>,
) -> ApiResult<Json<RegisteredPublisher>> {
    let c = cache_to_configure(&state, &auth, &cache).await?;
    publisher
        .validate()
        .map_err(|e| ApiError::bad_request("invalid-publisher", e.to_string()))?;
    let issuer = publisher.issuer();
    if !state.config.oidc.issuers.iter().any(|i| i.name == issuer) {
        let known: Vec<&str> = state
            .config
            .oidc
            .issuers
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        return Err(ApiError::bad_request(
            "unknown-issuer",
            format!("this server has no [[oidc.issuers]] named {issuer:?} (configured: {known:?})"),
        ));
    }
    let id = state
        .db
        .add_publisher(c.id, &publisher, auth.subject())
        .await?;
    tracing::info!(cache = %c.name, by = auth.subject(), id, publisher = %publisher.describe(), "trusted publisher added");
    Ok(Json(RegisteredPublisher {
        id,
        publisher,
        created_by: auth.subject().to_string(),
        created_at: crate::now(),
    }))
}

pub async fn remove(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path((cache, id)): Path<(String, i64)>,
) -> ApiResult<Json<serde_json::Value>> {
    let c = cache_to_configure(&state, &auth, &cache).await?;
    if !state.db.remove_publisher(c.id, id).await? {
        return Err(ApiError::not_found(
            "no-such-publisher",
            format!("cache {cache:?} has no trusted publisher {id}"),
        ));
    }
    tracing::info!(cache = %c.name, by = auth.subject(), id, "trusted publisher removed");
    Ok(Json(serde_json::json!({ "removed": id })))
}
