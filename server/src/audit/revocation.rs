//! Revoking keys and uploads (the revoke permission), and the feed of
//! revoked paths (anyone who may pull from the cache).

use axum::extract::{Path, Query, State};
use axum::Json;
use provenix_policy::Action;
use provenix_provenance::revocation::{RevokeRequest, RevokeResponse, RevokedPath};
use provenix_provenance::ErrorCode;
use serde::Deserialize;
use std::sync::Arc;

use crate::access;
use crate::db::caches::CacheRow;
use crate::error::{ApiError, ApiResult};
use crate::identity::caller::{Caller, PullCaller};
use crate::state::AppState;

pub async fn revoke(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<RevokeRequest>,
) -> ApiResult<Json<RevokeResponse>> {
    if caller.is_anonymous() {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "revoking needs a token with --revoke",
        ));
    }
    if let Some(problem) = req.problem() {
        return Err(ApiError::new(ErrorCode::InvalidRevocation, problem));
    }
    // The caches this caller may revoke on, narrowed to `cache` if given.
    let caches: Vec<CacheRow> = state
        .db
        .all_caches()
        .await?
        .into_iter()
        .filter(|c| req.cache.as_deref().is_none_or(|name| name == c.name))
        .filter(|c| access::may(&state, &caller, Action::Revoke, c))
        .collect();
    if caches.is_empty() {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            match &req.cache {
                Some(c) => format!("your token may not revoke in cache {c:?} (needs --revoke)"),
                None => "your token may not revoke in any cache (needs --revoke)".into(),
            },
        ));
    }
    let ids: Vec<i64> = caches.iter().map(|c| c.id).collect();
    super::require_one_issuer(&state, &ids, &req.identity).await?;
    let done = state.db.revoke(&req, &ids, caller.subject()).await?;
    tracing::warn!(
        by = caller.subject(), reason = %req.reason, dry_run = req.dry_run,
        keys = done.keys.len(), uploads = done.uploads.len(), paths = done.paths.len(),
        "revocation"
    );
    if done.revocation_id.is_some() {
        state.metrics.revocations.inc();
        state.metrics.revoked_paths.inc_by(done.paths.len() as u64);
    }
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
    PullCaller(caller): PullCaller,
    Path(cache): Path<String>,
    Query(q): Query<FeedQuery>,
) -> ApiResult<Json<provenix_provenance::audit::Page<RevokedPath>>> {
    let c = access::authorize(&state, &caller, Action::Pull, &cache).await?;
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
