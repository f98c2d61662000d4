//! Pushing paths: which are missing, recording a NAR the server already holds,
//! and streaming a new NAR in.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use futures::TryStreamExt;
use provenix_policy::validate_cache_name;
use provenix_provenance::exchange::{decode_public_key, verify};
use provenix_provenance::store_path::validate_hash_part;
use provenix_provenance::upload::{
    MissingPathsRequest, MissingPathsResponse, UploadOutcome, UploadPathNarInfo, UploadResult,
    UPLOAD_HEADER,
};
use std::sync::Arc;

use crate::auth::Auth;
use crate::db::caches::CacheRow;
use crate::db::identity::KeyRow;
use crate::db::objects::{CommitOutcome, NewObject, Witness};
use crate::error::{ApiError, ApiResult};
use crate::ingest::IngestError;
use crate::state::AppState;

/// The cache if the caller may push to it.
async fn cache_for_push(state: &AppState, auth: &Auth, cache: &str) -> ApiResult<CacheRow> {
    validate_cache_name(cache)
        .map_err(|e| ApiError::bad_request("invalid-cache-name", e.to_string()))?;
    let perm = auth.permission(cache);
    let c = state.db.cache_by_name(cache).await?;
    match c {
        Some(c) if perm.push => Ok(c),
        Some(c) if c.is_public || !perm.is_empty() => Err(ApiError::forbidden(format!(
            "your token ({}) may not push to cache {cache:?} (needs --push)",
            auth.subject()
        ))),
        _ if auth.is_anonymous() => Err(ApiError::unauthorized("pushing needs a token")),
        _ => Err(ApiError::no_such_cache(cache)),
    }
}

fn unauthorized(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// The cache an upload goes to, if its statement is signed by a short-term
/// key that is valid now (server clock) and certified for that cache.
/// Nothing else authorizes an upload: a bearer token alone never does.
async fn cache_for_signed_upload(
    state: &AppState,
    info: &UploadPathNarInfo,
) -> ApiResult<(CacheRow, KeyRow)> {
    validate_cache_name(&info.cache)
        .map_err(|e| ApiError::bad_request("invalid-cache-name", e.to_string()))?;
    let (Some(key_id), Some(signature)) = (&info.key_id, &info.signature) else {
        return Err(unauthorized(
            "unsigned-upload",
            "uploads must be signed by a short-term key from /_api/v1/keys/exchange (provenix push does this)".into(),
        ));
    };
    let key = state.db.key_by_id(key_id).await?.ok_or_else(|| {
        unauthorized(
            "unknown-key",
            format!("no signing key {key_id:?} was issued by this server"),
        )
    })?;
    if key.revoked {
        return Err(unauthorized(
            "key-revoked",
            format!("signing key {key_id} has been revoked"),
        ));
    }
    let now = crate::now();
    if now > key.not_after || now < key.not_before {
        return Err(unauthorized(
            "key-expired",
            format!(
                "signing key {key_id} was valid until {} (server time now {now}); exchange for a fresh key",
                key.not_after
            ),
        ));
    }
    let public_key = decode_public_key(&key.public_key).map_err(ApiError::internal)?;
    verify(&public_key, &info.statement(), signature).map_err(|e| {
        unauthorized(
            "invalid-signature",
            format!("the upload statement's signature does not verify with key {key_id}: {e}"),
        )
    })?;
    let cache = state.db.cache_by_name(&info.cache).await?;
    match cache {
        Some(c) if c.id == key.cache_id => Ok((c, key)),
        _ => Err(ApiError::forbidden(format!(
            "signing key {key_id} was issued for another cache, not {:?}",
            info.cache
        ))),
    }
}

pub async fn missing_paths(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Json(req): Json<MissingPathsRequest>,
) -> ApiResult<Json<MissingPathsResponse>> {
    let c = cache_for_push(&state, &auth, &req.cache).await?;
    for h in &req.store_path_hashes {
        validate_hash_part(h)
            .map_err(|e| ApiError::bad_request("invalid-store-path", e.to_string()))?;
    }
    let missing_paths = state.db.missing_paths(c.id, &req.store_path_hashes).await?;
    Ok(Json(MissingPathsResponse { missing_paths }))
}

fn new_object(c: &CacheRow, key: &KeyRow, info: &UploadPathNarInfo) -> ApiResult<NewObject> {
    let v = info
        .validate(&c.store_dir)
        .map_err(|e| ApiError::bad_request("invalid-nar-info", e.to_string()))?;
    Ok(NewObject {
        cache_id: c.id,
        store_path_hash: v.store_path.hash_part().to_string(),
        store_path: info.store_path.clone(),
        nar_hash: info.nar_hash.to_nix_string(),
        nar_size: i64::try_from(info.nar_size)
            .map_err(|_| ApiError::bad_request("invalid-nar-info", "nar_size is too large"))?,
        refs: v.references,
        deriver: v.deriver,
        ca: info.ca.clone(),
        witness: Witness {
            signing_key_row: key.id,
            // The statement is JSON after an ASCII prefix: always UTF-8.
            statement: String::from_utf8_lossy(&info.statement()).into_owned(),
            signature: info.signature.clone().unwrap_or_default(),
        },
    })
}

fn outcome_to_result(
    outcome: CommitOutcome,
    new: UploadOutcome,
    info: &UploadPathNarInfo,
) -> ApiResult<Json<UploadResult>> {
    match outcome {
        CommitOutcome::Created => Ok(Json(UploadResult { outcome: new })),
        CommitOutcome::AlreadyPresent => Ok(Json(UploadResult { outcome: UploadOutcome::Exists })),
        CommitOutcome::Conflict { existing_nar_hash } => Err(ApiError::conflict(
            "nar-hash-conflict",
            format!(
                "{} is already in this cache with NAR hash {existing_nar_hash}; this upload's is {}",
                info.store_path,
                info.nar_hash.to_nix_string()
            ),
        )),
        CommitOutcome::KeyRevoked => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "key-revoked",
            "the signing key was revoked while this upload ran; nothing was stored",
        )),
        CommitOutcome::ChunkGone => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "retry",
            "garbage collection removed data this upload relied on; upload again",
        )),
    }
}

/// The answer for a path the cache already has, before any NAR is read.
async fn precheck(
    state: &AppState,
    obj: &NewObject,
    info: &UploadPathNarInfo,
) -> ApiResult<Option<Json<UploadResult>>> {
    match state.db.path_outcome(obj).await? {
        Some(outcome) => outcome_to_result(outcome, UploadOutcome::Exists, info).map(Some),
        None => Ok(None),
    }
}

/// Records a path whose NAR the server already holds, without the NAR being
/// sent. With `require-proof-of-possession` (the default) this is only done
/// when the caller can already read that NAR from some cache; otherwise the
/// answer is `nar-required` and the client uploads it.
pub async fn record_existing_nar(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Json(info): Json<UploadPathNarInfo>,
) -> ApiResult<Json<UploadResult>> {
    let (c, key) = cache_for_signed_upload(&state, &info).await?;
    let obj = new_object(&c, &key, &info)?;
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
            .any(|(name, public)| *public || auth.permission(name).pull);
        if !readable {
            return Ok(nar_required);
        }
    }
    let outcome = state.db.commit_existing_nar(&obj, nar_id).await?;
    outcome_to_result(outcome, UploadOutcome::Deduplicated, &info)
}

pub async fn upload_path(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<UploadResult>> {
    let raw = headers.get(UPLOAD_HEADER).ok_or_else(|| {
        ApiError::bad_request(
            "invalid-nar-info",
            format!("missing the {UPLOAD_HEADER} header"),
        )
    })?;
    let info: UploadPathNarInfo = serde_json::from_slice(raw.as_bytes()).map_err(|e| {
        ApiError::bad_request(
            "invalid-nar-info",
            format!("{UPLOAD_HEADER} is not valid: {e}"),
        )
    })?;
    let (c, key) = cache_for_signed_upload(&state, &info).await?;
    let obj = new_object(&c, &key, &info)?;
    if let Some(done) = precheck(&state, &obj, &info).await? {
        return Ok(done);
    }

    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let started = std::time::Instant::now();
    let ingest = state.ingestor.ingest(reader, &info.nar_hash, info.nar_size);
    let ingested = match tokio::time::timeout(state.config.max_upload_duration, ingest).await {
        Err(_) => {
            return Err(ApiError::bad_request(
                "upload-timeout",
                "the upload took longer than 12 hours",
            ))
        }
        Ok(Err(e)) => {
            let code = match &e {
                IngestError::Nar(_) => "malformed-nar",
                IngestError::HashMismatch { .. } => "nar-hash-mismatch",
                IngestError::SizeMismatch { .. } => "nar-size-mismatch",
                IngestError::Io(_) => "upload-interrupted",
                IngestError::Storage(_) | IngestError::Db(_) | IngestError::DbRead(_) => {
                    return Err(ApiError::internal(e))
                }
            };
            tracing::info!(path = %info.store_path, key = %key.key_id, "upload refused: {e}");
            return Err(ApiError::bad_request(code, e.to_string()));
        }
        Ok(Ok(i)) => i,
    };
    let ingested_at = std::time::Instant::now();
    // The commit is one transaction: if the database aborts it for a
    // conflict with another (deadlock, serialization), nothing was written
    // and it can simply run again; the chunks are stored already.
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        match state
            .db
            .commit_upload(&obj, ingested.compression, &ingested.chunks)
            .await
        {
            Err(e) if attempts < 4 && crate::db::is_transient(&e) => {
                tracing::info!(path = %info.store_path, "commit conflicted, running it again: {e}");
            }
            other => break other?,
        }
    };
    if outcome == CommitOutcome::Created {
        tracing::info!(path = %info.store_path, cache = %c.name, key = %key.key_id, sub = %key.subject, size = info.nar_size,
            ingest_ms = (ingested_at - started).as_millis() as u64,
            commit_ms = ingested_at.elapsed().as_millis() as u64, "uploaded");
    }
    outcome_to_result(outcome, UploadOutcome::Uploaded, &info)
}
