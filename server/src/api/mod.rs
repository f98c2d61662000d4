//! The JSON API under `/_api/v1/`.

pub mod caches;
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
        .route("/_api/v1/get-missing-paths", post(upload::missing_paths))
        .route("/_api/v1/upload-path", put(upload::upload_path))
        .route(
            "/_api/v1/upload-path/existing-nar",
            post(upload::record_existing_nar),
        )
}
