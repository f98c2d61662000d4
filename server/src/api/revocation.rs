//! Revoking keys and uploads (the revoke permission), and the feed of
//! revoked paths (anyone who may pull from the cache).

use axum::extract::{Path, Query, State};
use axum::Json;
use provenix_provenance::revocation::{RevokeRequest, RevokeResponse, RevokedPath};
use serde::Deserialize;
use std::sync::Arc;

use crate::auth::Auth;
use crate::binary_cache::cache_for_pull;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub async fn revoke(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Json(req): Json<RevokeRequest>,
) -> ApiResult<Json<RevokeResponse>> {
    if auth.is_anonymous() {
        return Err(ApiError::unauthorized(
            "revoking needs a token with --revoke",
        ));
    }
    if let Some(problem) = req.problem() {
        return Err(ApiError::bad_request("invalid-revocation", problem));
    }
    // The caches this caller may revoke on, narrowed to `cache` if given.
    let caches: Vec<(i64, String)> = state
        .db
        .all_caches()
        .await?
        .into_iter()
        .filter(|(_, name)| auth.permission(name).revoke)
        .filter(|(_, name)| req.cache.as_deref().is_none_or(|c| c == name))
        .collect();
    if caches.is_empty() {
        return Err(ApiError::forbidden(match &req.cache {
            Some(c) => format!("your token may not revoke in cache {c:?} (needs --revoke)"),
            None => "your token may not revoke in any cache (needs --revoke)".into(),
        }));
    }
    let ids: Vec<i64> = caches.iter().map(|(id, _)| *id).collect();
    let done = state.db.revoke(&req, &ids, auth.subject()).await?;
    tracing::warn!(
        by = auth.subject(), reason = %req.reason, dry_run = req.dry_run,
        keys = done.keys.len(), uploads = done.uploads.len(), paths = done.paths.len(),
        "revocation"
    );
    Ok(Json(RevokeResponse {
        dry_run: req.dry_run,
        revocation_id: done.revocation_id,
        keys: done.keys,
        uploads: done.uploads,
        paths: done.paths,
    }))
}

#[derive(Deserialize)]
pub struct FeedQuery {
    cursor: Option<i64>,
    since: Option<i64>,
    limit: Option<i64>,
}

pub async fn revoked_paths(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(cache): Path<String>,
    Query(q): Query<FeedQuery>,
) -> ApiResult<Json<provenix_provenance::audit::Page<RevokedPath>>> {
    let c = cache_for_pull(&state, &auth, &cache).await?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let items = state
        .db
        .revoked_paths(c.id, q.cursor, q.since, limit)
        .await?;
    let next_cursor = (items.len() as i64 == limit)
        .then(|| items.last().map(|p| p.id))
        .flatten();
    Ok(Json(provenix_provenance::audit::Page {
        items,
        next_cursor,
    }))
}
