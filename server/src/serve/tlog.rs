//! A cache's transparency log as c2sp.org/tlog-tiles serves it, under the
//! prefix `/{cache}/tlog` (Nix's own `log/` holds build logs): the signed
//! checkpoint, hash tiles and entry bundles. Readable by whoever may pull
//! from the cache, through the same access decision: a private cache's
//! log answers as a missing cache does.

use axum::extract::State;
use axum::http::{header, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use provenix_policy::access::Action;
use provenix_provenance::tlog::tiles::{TileError, TilePath};
use provenix_provenance::ErrorCode;
use std::sync::Arc;

use crate::access;
use crate::error::{ApiError, ApiResult};
use crate::identity::caller::PullCaller;
use crate::serve::stored_tiles;
use crate::state::AppState;

/// How long a checkpoint may be cached: a new one follows each commit
/// within the integration interval.
const CHECKPOINT_MAX_AGE: u64 = 1;
/// Full tiles and bundles never change.
const IMMUTABLE: &str = "max-age=31536000, immutable";

fn no_checkpoint() -> ApiError {
    ApiError::new(
        ErrorCode::NotInLog,
        "the log has no published checkpoint yet",
    )
}

fn cache_control(public: bool, rest: &str) -> HeaderValue {
    let visibility = if public { "public" } else { "private" };
    HeaderValue::from_str(&format!("{visibility}, {rest}")).expect("ascii")
}

pub async fn checkpoint(
    State(state): State<Arc<AppState>>,
    PullCaller(caller): PullCaller,
    uri: Uri,
) -> ApiResult<Response> {
    let (cache, _) = raw_parts(&uri);
    let c = access::authorize(&state, &caller, Action::Pull, cache).await?;
    let head = state.db.log_head(c.id).await?.ok_or_else(no_checkpoint)?;
    if head.published.is_empty() {
        return Err(no_checkpoint());
    }
    // The published checkpoint: with its witnesses' cosignatures, once
    // enough of them cosigned.
    let mut resp = (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        head.published,
    )
        .into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        cache_control(c.is_public, &format!("max-age={CHECKPOINT_MAX_AGE}")),
    );
    Ok(resp)
}

/// `GET /.well-known/provenix/tlog/{cache}`: the log's origin and the
/// verifier keys signing its checkpoints now, newest first, one per line
/// (`# origin <origin>` first): what a witness operator or a client pins,
/// fetched without an API token where the cache is public.
pub async fn verifier_keys(
    State(state): State<Arc<AppState>>,
    PullCaller(caller): PullCaller,
    axum::extract::Path(cache): axum::extract::Path<String>,
) -> ApiResult<Response> {
    let c = access::authorize(&state, &caller, Action::Pull, &cache).await?;
    let now = crate::clock::now();
    let keys = state.db.log_verifier_keys(c.id).await?;
    let Some((origin, _, _)) = keys.first() else {
        return Err(no_checkpoint());
    };
    let mut body = format!("# origin {origin}\n");
    for (_, key, retire_at) in &keys {
        if retire_at.is_none_or(|t| t > now) {
            body.push_str(key);
            body.push('\n');
        }
    }
    let mut resp = ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        cache_control(c.is_public, &format!("max-age={CHECKPOINT_MAX_AGE}")),
    );
    Ok(resp)
}

/// The cache and the rest of the path after `/tlog/`, as the request spelt
/// them (axum's path parameters are percent-decoded): the specification's
/// paths hold no `%`, and a decoded one would name a tile under a second
/// spelling.
fn raw_parts(uri: &Uri) -> (&str, &str) {
    let path = uri.path().strip_prefix('/').unwrap_or_default();
    match path.split_once("/tlog/") {
        Some((cache, rest)) => (cache, rest),
        None => ("", ""),
    }
}

pub async fn tile(
    State(state): State<Arc<AppState>>,
    PullCaller(caller): PullCaller,
    uri: Uri,
) -> ApiResult<Response> {
    let (cache, path) = raw_parts(&uri);
    // The most asked read of all: the cache's row as read in the last
    // second, and no database read at all for a tile asked before.
    let c = access::authorize_recent(&state, &caller, Action::Pull, cache).await?;
    let tile = TilePath::parse(path).map_err(|e| {
        let shown: String = path.chars().take(80).collect();
        ApiError::new(ErrorCode::InvalidTilePath, format!("{shown:?}: {e}"))
    })?;
    if tile
        .check_in_tree(state.tile_memo.known_size(c.id))
        .is_err()
    {
        let head = state.db.log_head(c.id).await?.ok_or_else(no_checkpoint)?;
        state.tile_memo.saw_size(c.id, head.size as u64);
        tile.check_in_tree(head.size as u64)
            .map_err(|e: TileError| {
                ApiError::new(
                    ErrorCode::NotInLog,
                    format!("{path}: {e} (the log has {} entries)", head.size),
                )
            })?;
    }
    let keep = tile.ends_at_edge(state.tile_memo.known_size(c.id));
    let body = match stored_tiles::tile_bytes(&state, c.id, &tile, keep).await {
        Ok(body) => body,
        // Destroyed on another replica within the last second: its log
        // went with it, and it answers as any missing cache (not a 5xx).
        Err(e) if state.db.cache_by_name(cache).await?.map(|r| r.id) != Some(c.id) => {
            tracing::debug!("{path}: {}", e.message);
            return Err(ApiError::no_such_cache(cache));
        }
        Err(e) => return Err(e),
    };
    let lifetime = if tile.is_full() {
        IMMUTABLE.to_string()
    } else {
        format!("max-age={CHECKPOINT_MAX_AGE}")
    };
    let mut resp = ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, cache_control(c.is_public, &lifetime));
    Ok(resp)
}
