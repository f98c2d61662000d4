//! Pins of a cache: named paths GC keeps with their closures. Anyone who
//! can see the cache may list them; setting and removing one needs the
//! configure-retention permission (a pin holds paths as retention does);
//! their history, with who made each change, is provenance.

use axum::extract::{Path, Query, State};
use axum::Json;
use provenix_policy::retention::{check_keep_revisions, check_pin_name};
use provenix_policy::Action;
use provenix_provenance::pin::{Pin, PinAnswer, PinChange, PinRequest};
use provenix_provenance::{ErrorCode, StorePath};
use serde::Deserialize;
use std::sync::Arc;

use crate::access;
use crate::db::pins::{NewPin, PinOutcome};
use crate::error::{ApiError, ApiResult};
use crate::identity::caller::Caller;
use crate::state::AppState;

fn out_of_range(e: provenix_policy::limits::OutOfRange) -> ApiError {
    ApiError::new(e.code, e.message)
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(cache): Path<String>,
) -> ApiResult<Json<Vec<Pin>>> {
    let c = access::authorize(&state, &caller, Action::ReadInfo, &cache).await?;
    Ok(Json(state.db.pins(c.id).await?))
}

pub async fn pin(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((cache, name)): Path<(String, String)>,
    Json(req): Json<PinRequest>,
) -> ApiResult<Json<PinAnswer>> {
    let c = access::authorize(&state, &caller, Action::ManagePins, &cache).await?;
    check_pin_name(&name).map_err(out_of_range)?;
    check_keep_revisions(req.keep_revisions).map_err(out_of_range)?;
    let path = StorePath::parse(&c.store_dir, &req.store_path)
        .map_err(|e| ApiError::new(ErrorCode::InvalidStorePath, e.to_string()))?;
    // Only a path the cache holds can be pinned: a pin of nothing would
    // hold nothing, and would later hold whatever was pushed under it.
    if state
        .db
        .held_store_path(c.id, path.hash_part())
        .await?
        .as_deref()
        != Some(req.store_path.as_str())
    {
        return Err(ApiError::new(
            ErrorCode::NoSuchPath,
            format!("{} is not in cache {cache:?}", req.store_path),
        ));
    }
    let outcome = state
        .db
        .pin(&NewPin {
            cache_id: c.id,
            name: &name,
            store_path: &req.store_path,
            store_path_hash: path.hash_part(),
            keep_revisions: req.keep_revisions,
            actor: caller.subject(),
        })
        .await?;
    if outcome == PinOutcome::Pinned {
        tracing::info!(cache = %c.name, pin = %name, path = %req.store_path, keep_revisions = req.keep_revisions, by = caller.subject(), "pinned");
    }
    let pin = state.db.pin_named(c.id, &name).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::NoSuchPin,
            format!("pin {name:?} was removed by another request as this one was recorded"),
        )
    })?;
    Ok(Json(PinAnswer {
        changed: outcome == PinOutcome::Pinned,
        pin,
    }))
}

pub async fn remove(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((cache, name)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let c = access::authorize(&state, &caller, Action::ManagePins, &cache).await?;
    check_pin_name(&name).map_err(out_of_range)?;
    if !state.db.remove_pin(c.id, &name, caller.subject()).await? {
        return Err(ApiError::new(
            ErrorCode::NoSuchPin,
            format!("cache {cache:?} has no pin {name:?}"),
        ));
    }
    tracing::info!(cache = %c.name, pin = %name, by = caller.subject(), "pin removed");
    Ok(Json(serde_json::json!({ "removed": name })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangesQuery {
    #[serde(default = "default_limit")]
    pub limit: i64,
    /// Changes older than this id (the last id of the previous page).
    pub before: Option<i64>,
}

fn default_limit() -> i64 {
    100
}

/// The cache's pin changes, newest first: provenance, so audit access.
pub async fn changes(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(cache): Path<String>,
    Query(q): Query<ChangesQuery>,
) -> ApiResult<Json<Vec<PinChange>>> {
    let c = access::authorize(&state, &caller, Action::Audit, &cache).await?;
    Ok(Json(
        state
            .db
            .pin_changes(c.id, q.before.unwrap_or(i64::MAX), q.limit.clamp(1, 1000))
            .await?,
    ))
}
