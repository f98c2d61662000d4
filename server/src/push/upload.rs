//! Pushing paths: which are missing, recording a NAR the server already holds,
//! and streaming a new NAR in.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use futures::TryStreamExt;
use provenix_policy::{check_completion, Action};
use provenix_provenance::store_path::validate_hash_part;
use provenix_provenance::upload::{
    MissingPathsRequest, MissingPathsResponse, UploadOutcome, UploadPathNarInfo, UploadResult,
    UPLOAD_HEADER,
};
use provenix_provenance::ErrorCode;
use std::sync::Arc;

use crate::access;
use crate::db::caches::CacheRow;
use crate::db::commit::{CommitOutcome, NewPath, SignedStatement};
use crate::db::upload_keys::UploadKeyRow;
use crate::error::{ApiError, ApiResult};
use crate::identity::caller::Caller;
use crate::push::authorize::cache_for_signed_upload;
use crate::push::commit;
use crate::push::pipeline::IngestError;
use crate::state::AppState;

pub async fn missing_paths(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<MissingPathsRequest>,
) -> ApiResult<Json<MissingPathsResponse>> {
    let c = access::authorize(&state, &caller, Action::Push, &req.cache).await?;
    for h in &req.store_path_hashes {
        validate_hash_part(h)
            .map_err(|e| ApiError::new(ErrorCode::InvalidStorePath, e.to_string()))?;
    }
    let missing_paths = state.db.missing_paths(c.id, &req.store_path_hashes).await?;
    let nars_held = nars_held(&state, &caller, &req, &missing_paths).await?;
    Ok(Json(MissingPathsResponse {
        missing_paths,
        nars_held,
        max_request_body: state.config.max_request_body,
    }))
}

/// Of `missing`, the paths whose NAR (by the request's hashes) the server
/// holds where the caller may record it without sending it: what
/// `existing-nar` would answer, asked for all at once.
async fn nars_held(
    state: &AppState,
    caller: &Caller,
    req: &MissingPathsRequest,
    missing: &[String],
) -> ApiResult<Vec<String>> {
    if req.nar_hashes.is_empty() {
        return Ok(Vec::new());
    }
    if req.nar_hashes.len() != req.store_path_hashes.len() {
        return Err(ApiError::new(
            ErrorCode::InvalidNarInfo,
            "nar_hashes must give one NAR hash per store path hash, in the same order",
        ));
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let nar_of: std::collections::HashMap<&str, String> = req
        .store_path_hashes
        .iter()
        .map(String::as_str)
        .zip(req.nar_hashes.iter().map(|h| h.to_nix_string()))
        .collect();
    let wanted: Vec<String> = missing.iter().map(|h| nar_of[h.as_str()].clone()).collect();
    let held = state.db.nar_ids_by_hash(&wanted).await?;
    let mut readable = std::collections::HashMap::new();
    let mut out = Vec::new();
    for h in missing {
        let Some(&nar_id) = held.get(&nar_of[h.as_str()]) else {
            continue;
        };
        let may = match readable.get(&nar_id) {
            Some(&may) => may,
            None => {
                let may = !state.config.require_proof_of_possession
                    || state
                        .db
                        .caches_holding_nar(nar_id)
                        .await?
                        .iter()
                        .any(|c| access::may(state, caller, Action::Pull, c));
                readable.insert(nar_id, may);
                may
            }
        };
        if may {
            out.push(h.clone());
        }
    }
    Ok(out)
}

pub(super) async fn new_object(
    state: &AppState,
    c: &CacheRow,
    key: &UploadKeyRow,
    info: &UploadPathNarInfo,
) -> ApiResult<NewPath> {
    let v = info
        .validate(&c.store_dir)
        .map_err(|e| ApiError::new(ErrorCode::InvalidNarInfo, e.to_string()))?;
    let nonce = info.nonce.clone().unwrap_or_default();
    // Refused before a byte of the NAR is read; the commit's insert of the
    // nonce is what makes the refusal certain under races.
    if state.db.statement_spent(key.id, &nonce).await? {
        return Err(crate::error::statement_replayed());
    }
    Ok(NewPath {
        cache_id: c.id,
        store_path_hash: v.store_path.hash_part().to_string(),
        store_path: info.store_path.clone(),
        nar_hash: info.nar_hash.to_nix_string(),
        nar_size: i64::try_from(info.nar_size)
            .map_err(|_| ApiError::new(ErrorCode::InvalidNarInfo, "nar_size is too large"))?,
        refs: v.references,
        deriver: v.deriver,
        ca: info.ca.clone(),
        signed: SignedStatement {
            upload_key_row: key.id,
            // The statement is JSON after an ASCII prefix: always UTF-8.
            statement: String::from_utf8_lossy(&info.statement()).into_owned(),
            signature: info.signature.clone().unwrap_or_default(),
            nonce,
            remember_until: key
                .not_after
                .saturating_add(state.config.signing_keys.completion_grace.as_secs() as i64),
        },
    })
}

/// The answer for a path the cache already has, before any NAR is read.
pub(super) async fn precheck(
    state: &AppState,
    obj: &NewPath,
    info: &UploadPathNarInfo,
) -> ApiResult<Option<Json<UploadResult>>> {
    match state.db.record_if_present(obj).await? {
        Some(outcome) => {
            commit::outcome_to_result(&state.metrics, outcome, UploadOutcome::Exists, info)
                .map(Some)
        }
        None => Ok(None),
    }
}

/// Records a path whose NAR the server already holds, without the NAR being
/// sent. With `require-proof-of-possession` (the default) this is only done
/// when the caller can already read that NAR from some cache; otherwise the
/// answer is `nar-required` and the client uploads it.
pub async fn record_existing_nar(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(info): Json<UploadPathNarInfo>,
) -> ApiResult<Json<UploadResult>> {
    let (c, key) = cache_for_signed_upload(&state, &info).await?;
    let obj = new_object(&state, &c, &key, &info).await?;
    if let Some(done) = precheck(&state, &obj, &info).await? {
        return Ok(done);
    }
    let nar_required = Json(UploadResult {
        outcome: UploadOutcome::NarRequired,
    });
    let Some(nar_id) = state.db.nar_id_by_hash(&obj.nar_hash).await? else {
        return Ok(nar_required);
    };
    if state.config.require_proof_of_possession {
        let holders = state.db.caches_holding_nar(nar_id).await?;
        let readable = holders
            .iter()
            .any(|c| access::may(&state, &caller, Action::Pull, c));
        if !readable {
            return Ok(nar_required);
        }
    }
    // A NAR not sent is vouched for by the statement alone: it must
    // describe the NAR (and the path, where stored) as the server has them.
    if !state.db.existing_nar_fits(&obj, nar_id).await? {
        return Ok(nar_required);
    }
    let outcome = state.db.commit_existing_nar(&obj, nar_id).await?;
    commit::outcome_to_result(&state.metrics, outcome, UploadOutcome::Deduplicated, &info)
}

pub async fn upload_path(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<UploadResult>> {
    let raw = headers.get(UPLOAD_HEADER).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidNarInfo,
            format!("missing the {UPLOAD_HEADER} header"),
        )
    })?;
    let info: UploadPathNarInfo = serde_json::from_slice(raw.as_bytes()).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidNarInfo,
            format!("{UPLOAD_HEADER} is not valid: {e}"),
        )
    })?;
    let (c, key) = cache_for_signed_upload(&state, &info).await?;
    let obj = new_object(&state, &c, &key, &info).await?;
    if let Some(done) = precheck(&state, &obj, &info).await? {
        return Ok(done);
    }

    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    ingest_and_commit(&state, &c, &key, &info, &obj, reader).await
}

/// Streams a NAR through the ingest's checks (structure, hash, size) and
/// commits it: the path is visible once this returns `Uploaded`, and
/// nothing is if it fails. Single uploads and completed sessions both
/// end here.
pub(super) async fn ingest_and_commit<R: tokio::io::AsyncRead + Unpin + Send>(
    state: &AppState,
    c: &CacheRow,
    key: &UploadKeyRow,
    info: &UploadPathNarInfo,
    obj: &NewPath,
    reader: R,
) -> ApiResult<Json<UploadResult>> {
    let started = std::time::Instant::now();
    let ingest = state.ingestor.ingest(reader, &info.nar_hash, info.nar_size);
    let mut ingested = match tokio::time::timeout(state.config.max_upload_duration, ingest).await {
        Err(_) => {
            return Err(ApiError::new(
                ErrorCode::UploadTimeout,
                "the upload took longer than 12 hours",
            ))
        }
        // A database out of reach mid-ingest is 503 database-unavailable, as
        // at commit (the fault test found a chunk lookup's reset connection
        // answered 500).
        Ok(Err(IngestError::Db(db))) => return Err(db.into()),
        Ok(Err(IngestError::DbRead(read))) => return Err(read.into()),
        Ok(Err(e)) => {
            let code = match &e {
                IngestError::Nar(_) => ErrorCode::MalformedNar,
                IngestError::HashMismatch { .. } => ErrorCode::NarHashMismatch,
                IngestError::SizeMismatch { .. } => ErrorCode::NarSizeMismatch,
                IngestError::Io(_) => ErrorCode::UploadInterrupted,
                IngestError::Storage(_) => return Err(ApiError::storage(e)),
                IngestError::Db(_) | IngestError::DbRead(_) => return Err(ApiError::internal(e)),
            };
            tracing::info!(path = %info.store_path, key = %key.key_id, "upload refused: {e}");
            return Err(ApiError::new(code, e.to_string()));
        }
        Ok(Ok(i)) => i,
    };
    let ingested_at = std::time::Instant::now();
    check_key_at_completion(state, key)?;
    ingested.keep_packs();
    let outcome = commit::commit_upload(state, obj, &ingested).await?;
    if outcome == CommitOutcome::Created {
        tracing::info!(path = %info.store_path, cache = %c.name, key = %key.key_id, sub = %key.subject, size = info.nar_size,
            ingest_ms = (ingested_at - started).as_millis() as u64,
            commit_ms = ingested_at.elapsed().as_millis() as u64, "uploaded");
        state.metrics.upload_nar_bytes.inc_by(info.nar_size);
    }
    commit::outcome_to_result(&state.metrics, outcome, UploadOutcome::Uploaded, info)
}

/// An upload may complete until its key's expiry plus the completion
/// grace (a NAR streaming when the key ran out).
pub(super) fn check_key_at_completion(state: &AppState, key: &UploadKeyRow) -> ApiResult<()> {
    let completed_at = crate::clock::now();
    let grace = state.config.signing_keys.completion_grace.as_secs() as i64;
    check_completion(key.not_after, completed_at, grace).map_err(|code| {
        ApiError::new(
            code,
            format!(
                "signing key {} expired at {} and this upload completed at {completed_at}, past the {grace} s grace; nothing was stored: exchange for a fresh key and upload again",
                key.key_id, key.not_after
            ),
        )
    })
}
