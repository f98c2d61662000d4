//! The JSON API under `/_api/v1/`.

pub mod audit;
pub mod caches;
pub mod exchange;
pub mod publishers;
pub mod revocation;
pub mod upload;

use axum::routing::{delete, get, post, put};
use axum::Router;
use std::sync::Arc;

use crate::state::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
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
        .route(
            "/_api/v1/cache/{cache}/provenance/{path}",
            get(audit::provenance),
        )
        .route(
            "/_api/v1/cache/{cache}/provenance/{path}/in-toto",
            get(audit::in_toto),
        )
        .route("/_api/v1/cache/{cache}/uploads", get(audit::uploads))
        .route("/_api/v1/cache/{cache}/keys", get(audit::keys))
        .route(
            "/_api/v1/cache/{cache}/divergences",
            get(audit::divergences),
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
        .route("/_api/v1/get-missing-paths", post(upload::missing_paths))
        .route("/_api/v1/upload-path", put(upload::upload_path))
        .route(
            "/_api/v1/upload-path/existing-nar",
            post(upload::record_existing_nar),
        )
}
