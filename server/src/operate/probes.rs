//! `GET /health`: the process serves. `GET /ready`: the database and the
//! storage answer within a bound, for load balancers and systemd or
//! Kubernetes probes. Neither needs a token, and neither tells a caller
//! more than which dependency failed (the log says why).

use axum::extract::State;
use axum::Json;
use provenix_provenance::ErrorCode;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// How long each dependency may take to answer a readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `None` if `probe` answered in time; else the name of what failed.
async fn failing(
    what: &'static str,
    probe: impl Future<Output = anyhow::Result<()>>,
) -> Option<&'static str> {
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            tracing::warn!("not ready: {what}: {e:#}");
            Some(what)
        }
        Err(_) => {
            tracing::warn!("not ready: {what} gave no answer within {PROBE_TIMEOUT:?}");
            Some(what)
        }
    }
}

pub async fn ready(State(state): State<Arc<AppState>>) -> ApiResult<Json<serde_json::Value>> {
    let (database, storage) = tokio::join!(
        failing("database", async { Ok(state.db.ping().await?) }),
        failing("storage", state.storage.probe()),
    );
    let failed: Vec<&str> = [database, storage].into_iter().flatten().collect();
    if failed.is_empty() {
        return Ok(Json(serde_json::json!({ "status": "ready" })));
    }
    Err(ApiError::new(
        ErrorCode::NotReady,
        format!(
            "not ready: {} did not answer (the server log says why)",
            failed.join(" and ")
        ),
    ))
}
