//! provenixd: the provenix binary cache daemon. See docs/architecture.md.

pub mod api;
pub mod auth;
pub mod binary_cache;
pub mod ca;
pub mod chunk_hash;
pub mod config;
pub mod db;
pub mod error;
pub mod gc;
pub mod ingest;
pub mod key_ring;
pub mod oidc;
pub mod pack_reads;
pub mod signed_narinfo;
pub mod state;
pub mod storage;
pub mod token;
pub mod verify;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

use crate::error::ApiError;
use crate::state::AppState;

/// Unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(|| async { "provenix binary cache\n" }))
        .merge(api::router())
        .route("/{cache}/nix-cache-info", get(binary_cache::nix_cache_info))
        .route("/{cache}/nar/{file}", get(binary_cache::nar))
        .route("/{cache}/{file}", get(binary_cache::narinfo))
        .fallback(|| async { ApiError::not_found("not-found", "no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_host,
        ))
        .with_state(state)
}

/// Enforces `allowed-hosts` (empty: any host).
async fn check_host(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let allowed = &state.config.allowed_hosts;
    if !allowed.is_empty() {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !allowed.iter().any(|a| a == host) {
            return ApiError::bad_request(
                "host-not-allowed",
                format!("Host {host:?} is not in allowed-hosts"),
            )
            .into_response();
        }
    }
    next.run(req).await
}
