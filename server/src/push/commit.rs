//! The commit that makes an upload visible: one transaction, run again
//! when the database aborts it for a conflict with another (nothing was
//! written then, and the chunks are stored already), and its outcome as
//! the answer the client gets.

use axum::Json;
use provenix_provenance::upload::{UploadOutcome, UploadPathNarInfo, UploadResult};
use provenix_provenance::ErrorCode;

use crate::db::commit::{CommitOutcome, NewPath};
use crate::error::{ApiError, ApiResult};
use crate::operate::metrics::{Metrics, Outcome};
use crate::push::pipeline::Ingested;
use crate::state::AppState;

/// Commits of one upload the database may abort before the client is
/// told `retry`.
const COMMIT_ATTEMPTS: u32 = 4;

pub async fn commit_upload(
    state: &AppState,
    obj: &NewPath,
    ingested: &Ingested,
) -> ApiResult<CommitOutcome> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match state
            .db
            .commit_upload(obj, ingested.compression, &ingested.chunks)
            .await
        {
            Err(e) if attempts < COMMIT_ATTEMPTS && e.is_transient() => {
                tracing::info!(path = %obj.store_path, "commit conflicted, running it again: {e}");
            }
            other => return Ok(other?),
        }
    }
}

pub fn outcome_to_result(
    metrics: &Metrics,
    outcome: CommitOutcome,
    new: UploadOutcome,
    info: &UploadPathNarInfo,
) -> ApiResult<Json<UploadResult>> {
    let counted = match (&outcome, new) {
        (CommitOutcome::Created, UploadOutcome::Deduplicated) => Some("deduplicated"),
        (CommitOutcome::Created, _) => Some("uploaded"),
        (CommitOutcome::AlreadyPresent, _) => Some("exists"),
        _ => None,
    };
    if let Some(outcome) = counted {
        metrics.uploads.get_or_create(&Outcome { outcome }).inc();
    }
    match outcome {
        CommitOutcome::Created => Ok(Json(UploadResult { outcome: new })),
        CommitOutcome::AlreadyPresent => Ok(Json(UploadResult { outcome: UploadOutcome::Exists })),
        CommitOutcome::Conflict { existing_nar_hash } => Err(ApiError::new(ErrorCode::NarHashConflict,
            format!(
                "{} is already in this cache with NAR hash {existing_nar_hash}; this upload's is {}",
                info.store_path,
                info.nar_hash.to_nix_string()
            ),
        )),
        CommitOutcome::KeyRevoked => Err(ApiError::new(ErrorCode::KeyRevoked,
            "the signing key was revoked while this upload ran; nothing was stored",
        )),
        CommitOutcome::ChunkGone => Err(ApiError::new(ErrorCode::Retry,
            "garbage collection removed data this upload relied on; upload again",
        )),
        CommitOutcome::Mismatch { field } => Err(ApiError::new(
            ErrorCode::StatementMismatch,
            format!(
                "{} is in this cache with this NAR but another {field}; a statement vouching for a stored path must describe it as stored (nothing was recorded)",
                info.store_path
            ),
        )),
    }
}
