//! `POST /_api/v1/closure-statements`: one signed statement vouching for
//! the paths of a push's closure the cache already holds (issue 18). Like an
//! upload, it is authorized by its signature alone: an upload key certified
//! for the cache, valid now and unrevoked.

use axum::extract::State;
use axum::Json;
use provenix_provenance::closure::{ClosureResult, ClosureStatement};
use provenix_provenance::ErrorCode;
use std::sync::Arc;

use crate::db::closure::{ClosureEntry, ClosureOutcome, NewClosureStatement};
use crate::error::{ApiError, ApiResult};
use crate::push::authorize::{cache_for_signed, Signed};
use crate::state::AppState;

pub async fn record_closure_statement(
    State(state): State<Arc<AppState>>,
    Json(st): Json<ClosureStatement>,
) -> ApiResult<Json<ClosureResult>> {
    let text = st.statement();
    let signed = Signed {
        cache: &st.cache,
        key_id: st.key_id.as_deref(),
        signature: st.signature.as_deref(),
        bytes: &text,
        what: "closure statement",
    };
    let (c, key) = cache_for_signed(&state, signed).await?;
    let parsed = st
        .validate(&c.store_dir)
        .map_err(|e| ApiError::new(ErrorCode::InvalidClosureStatement, e.to_string()))?;
    let nonce = st.nonce.clone().unwrap_or_default();
    if state.db.statement_spent(key.id, &nonce).await? {
        return Err(crate::error::statement_replayed());
    }
    let entries = st
        .paths
        .iter()
        .zip(&parsed)
        .map(|(p, sp)| ClosureEntry {
            store_path_hash: sp.hash_part().to_string(),
            store_path: p.store_path.clone(),
            nar_hash: p.nar_hash.to_nix_string(),
            // validate() bounds it by i64::MAX.
            nar_size: p.nar_size as i64,
            metadata: p.metadata.clone(),
        })
        .collect();
    let new = NewClosureStatement {
        cache_id: c.id,
        upload_key_row: key.id,
        compressed: zstd::bulk::compress(&text, 3).map_err(ApiError::internal)?,
        // Only ASCII after validation: the text is UTF-8.
        text: String::from_utf8_lossy(&text).into_owned(),
        signature: st.signature.clone().unwrap_or_default(),
        nonce,
        remember_until: key
            .not_after
            .saturating_add(state.config.signing_keys.completion_grace.as_secs() as i64),
        entries,
    };
    match state.db.record_closure_statement(&new).await? {
        ClosureOutcome::Recorded { vouched } => {
            tracing::info!(cache = %c.name, key = %key.key_id, sub = %key.subject, vouched, "closure statement recorded");
            state
                .metrics
                .uploads
                .get_or_create(&crate::operate::metrics::Outcome { outcome: "vouched" })
                .inc_by(vouched);
            Ok(Json(ClosureResult {
                vouched,
                missing: Vec::new(),
            }))
        }
        ClosureOutcome::Missing { missing } => Ok(Json(ClosureResult { vouched: 0, missing })),
        ClosureOutcome::KeyRevoked => Err(ApiError::new(
            ErrorCode::KeyRevoked,
            "the signing key was revoked while this statement was checked; nothing was recorded",
        )),
        // The stored values are not named: a pusher who may not read the
        // cache learns which field differs, not what is stored.
        ClosureOutcome::Diverged { store_paths } => {
            tracing::warn!(cache = %c.name, key = %key.key_id, sub = %key.subject, paths = ?store_paths, "closure statement claims another NAR: divergences recorded");
            Err(ApiError::new(
                ErrorCode::NarHashConflict,
                format!(
                    "this cache serves another NAR for {} (recorded as divergences; nothing was vouched for)",
                    store_paths.join(", ")
                ),
            ))
        }
        ClosureOutcome::Mismatch { store_path, field } => Err(ApiError::new(
            ErrorCode::StatementMismatch,
            format!("{store_path} is in this cache with another {field} than this closure statement says; nothing was recorded"),
        )),
    }
}
