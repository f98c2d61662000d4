//! Every route the server answers, in one table: the Nix binary cache
//! protocol, the JSON API under `/_api/v1/`, and the well-known files.
//! A new endpoint is a line here and a handler in the module of its flow.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use provenix_provenance::ErrorCode;
use std::sync::Arc;

use crate::audit::{provenance, revocation};
use crate::error::ApiError;
use crate::identity::exchange;
use crate::manage::{caches, pins, publishers};
use crate::operate::{metrics, probes, request_id};
use crate::push::{closure, nix_copy, parts, upload};
use crate::serve::{binary_cache, tlog};
use crate::state::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    let (min_rate, grace) = (
        state.config.http.min_body_rate,
        state.config.http.body_rate_grace,
    );
    Router::new()
        .route("/", get(|| async { "provenix binary cache\n" }))
        .route("/health", get(probes::health))
        .route("/ready", get(probes::ready))
        // Any other method answers as a missing endpoint does too: a 405
        // would tell a stranger the endpoint is there.
        .route(
            "/metrics",
            get(metrics::metrics)
                .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") }),
        )
        .merge(api(state.config.http.max_header_size))
        .route("/{cache}/nix-cache-info", get(binary_cache::nix_cache_info))
        .route("/{cache}/tlog/checkpoint", get(tlog::checkpoint))
        .route("/{cache}/tlog/tile/{*rest}", get(tlog::tile))
        .route(
            "/{cache}/nar/{file}",
            get(binary_cache::nar).put(nix_copy::put_nar),
        )
        .route(
            "/{cache}/{file}",
            get(binary_cache::narinfo).put(nix_copy::put_narinfo),
        )
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        // The Nix protocol's routes too answer a wrong method in JSON.
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "this endpoint does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_host,
        ))
        .layer(axum::middleware::map_request(
            move |req: Request| async move { crate::http::body_rate::limit(req, min_rate, grace) },
        ))
        // Counts every answer, the refusals of the layers above included.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::layer,
        ))
        // Outermost: every answer, refusals of the layers above included,
        // carries its id.
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}

fn api(statement_limit: usize) -> Router<Arc<AppState>> {
    Router::new()
        .route("/_api/v1/caches", get(caches::list))
        .route(
            "/_api/v1/cache-config/{cache}",
            get(caches::info)
                .post(caches::create)
                .patch(caches::configure)
                .delete(caches::destroy),
        )
        .route(
            "/_api/v1/cache/{cache}/paths/{hash}",
            delete(caches::delete_path),
        )
        .route(
            "/_api/v1/cache-config/{cache}/publishers",
            get(publishers::list).post(publishers::add),
        )
        .route(
            "/_api/v1/cache-config/{cache}/publishers/{id}",
            delete(publishers::remove),
        )
        .route("/_api/v1/cache-config/{cache}/pins", get(pins::list))
        .route(
            "/_api/v1/cache-config/{cache}/pins/{name}",
            put(pins::pin).delete(pins::remove),
        )
        .route("/_api/v1/cache/{cache}/pin-changes", get(pins::changes))
        .route(
            "/_api/v1/cache/{cache}/provenance/{path}",
            get(provenance::provenance),
        )
        .route(
            "/_api/v1/cache/{cache}/provenance/{path}/in-toto",
            get(provenance::in_toto),
        )
        .route("/_api/v1/cache/{cache}/uploads", get(provenance::uploads))
        .route("/_api/v1/cache/{cache}/keys", get(provenance::keys))
        .route(
            "/_api/v1/cache/{cache}/closure-statements",
            get(provenance::closures),
        )
        .route(
            "/_api/v1/cache/{cache}/divergences",
            get(provenance::divergences),
        )
        .route("/_api/v1/revoke", post(revocation::revoke))
        .route(
            "/_api/v1/cache/{cache}/revoked-paths",
            get(revocation::revoked_paths),
        )
        .route("/_api/v1/oidc/audience", get(exchange::audience))
        .route("/_api/v1/keys/exchange", post(exchange::exchange))
        .route("/_api/v1/whoami", get(exchange::whoami))
        .route(
            "/.well-known/provenix/ca.pem",
            get(exchange::ca_certificate),
        )
        .route(
            "/.well-known/provenix/tlog/{cache}",
            get(tlog::verifier_keys),
        )
        .route("/_api/v1/get-missing-paths", post(upload::missing_paths))
        .route("/_api/v1/upload-path", put(upload::upload_path))
        .route(
            "/_api/v1/closure-statements",
            post(closure::record_closure_statement),
        )
        .route(
            "/_api/v1/upload-path/existing-nar",
            post(upload::record_existing_nar),
        )
        // A session's statement is held to what a single upload's header
        // may carry (max-header-size), not the JSON API's 2 MB.
        .route(
            "/_api/v1/upload-sessions",
            post(parts::start).layer(axum::extract::DefaultBodyLimit::max(statement_limit)),
        )
        .route(
            "/_api/v1/upload-sessions/{id}",
            get(parts::status).delete(parts::cancel),
        )
        .route(
            "/_api/v1/upload-sessions/{id}/parts/{part}",
            put(parts::put_part),
        )
        .route(
            "/_api/v1/upload-sessions/{id}/complete",
            post(parts::complete),
        )
        // On the JSON API only: the Nix protocol's handlers answer 200 or
        // their own JSON refusals, and narinfo is the hottest request.
        .layer(axum::middleware::from_fn(rejections_as_json))
}

/// axum's own rejections (a body, query or path it cannot deserialize, a
/// wrong method or content type, a body over the limit) answer plain text;
/// every refusal of this API is `{code, message}`, so they are rewritten
/// here, in one place, keeping axum's one-line explanation. Only error
/// answers that are not JSON already are touched: their bodies are short.
async fn rejections_as_json(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !status.is_client_error() || is_json {
        return resp;
    }
    let code = match status.as_u16() {
        405 => ErrorCode::MethodNotAllowed,
        413 => ErrorCode::TooLarge,
        404 => ErrorCode::NotFound,
        _ => ErrorCode::InvalidRequest,
    };
    let text = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        format!("the request was refused ({status})")
    } else {
        text
    };
    ApiError::new(code, message).into_response()
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
            return ApiError::new(
                ErrorCode::HostNotAllowed,
                format!("Host {host:?} is not in allowed-hosts"),
            )
            .into_response();
        }
    }
    next.run(req).await
}
