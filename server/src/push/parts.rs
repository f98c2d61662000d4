//! Uploads sent in parts, for servers behind proxies that limit request
//! bodies (`provenix_provenance::upload_parts`). A session is opened with
//! the signed statement (the same checks as a single upload), its parts
//! are stored as objects under `uploads/<id>/` on whichever replica they
//! reach, and completing it streams them in order through the single
//! upload's ingest and commit. The session id is the capability for parts
//! and completion; the key that signed the statement is checked again at
//! each (revoked, expired past the completion grace), and the NAR hash and
//! size it signed are checked at completion, so a stranger's part can only
//! make the upload fail.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::Json;
use futures::TryStreamExt;
use provenix_policy::{check_session_key, Action, UploadKeyFacts};
use provenix_provenance::upload::{UploadOutcome, UploadPathNarInfo, UploadResult};
use provenix_provenance::upload_parts::{
    PartLayout, PartReceived, UploadSession, UploadSessionStart,
};
use provenix_provenance::ErrorCode;
use std::sync::Arc;

use crate::access;
use crate::db::upload_keys::UploadKeyRow;
use crate::db::upload_sessions::UploadSessionRow;
use crate::error::{ApiError, ApiResult};
use crate::identity::caller::Caller;
use crate::push::authorize::cache_for_signed_upload;
use crate::push::upload::{ingest_and_commit, new_object, precheck};
use crate::state::AppState;
use crate::storage::StreamPut;

/// Part objects with no session row older than this are deleted by GC.
const STRAY_PART_AGE_SECS: i64 = 3600;

/// Where a session's parts are stored; GC reclaims what is left here.
pub const UPLOADS_PREFIX: &str = "uploads";

/// The most parts a session may have (8 TiB at the default 8 MiB): a
/// session's bookkeeping stays small whatever size a statement claims.
pub const MAX_PARTS: u64 = 1 << 20;

/// Sessions one key may have open at once (`push -j` sends five).
pub const MAX_OPEN_SESSIONS_PER_KEY: i64 = 64;

/// How long one replica's completion holds a session before another may
/// take it over (the first died mid-way).
const COMPLETION_CLAIM_SECS: i64 = 600;

fn part_key(session: &str, part: u64) -> String {
    format!("{UPLOADS_PREFIX}/{session}/{part:08}")
}

/// `POST /_api/v1/upload-sessions`: opens a session for the signed
/// statement in the body, or answers the outcome when the cache already
/// has the path.
pub async fn start(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(info): Json<UploadPathNarInfo>,
) -> ApiResult<Json<UploadSessionStart>> {
    // The bearer token too (the session token of the exchange): session
    // ids travel in URLs, and logs that hold them do not hold tokens.
    access::authorize(&state, &caller, Action::Push, &info.cache).await?;
    let (c, key) = cache_for_signed_upload(&state, &info).await?;
    let obj = new_object(&state, &c, &key, &info).await?;
    if let Some(done) = precheck(&state, &obj, &info).await? {
        return Ok(Json(UploadSessionStart {
            outcome: Some(done.0.outcome),
            session: None,
        }));
    }
    let part_size = match state.config.max_request_body {
        0 => info.nar_size,
        limit => limit,
    };
    let layout = PartLayout::new(info.nar_size, part_size);
    if layout.count() > MAX_PARTS {
        return Err(ApiError::new(
            ErrorCode::InvalidNarInfo,
            format!(
                "a NAR of {} bytes would take {} parts of {}; at most {MAX_PARTS} are taken",
                info.nar_size,
                layout.count(),
                layout.part_size
            ),
        ));
    }
    if state.db.open_upload_sessions_of(&key.key_id).await? >= MAX_OPEN_SESSIONS_PER_KEY {
        return Err(ApiError::new(
            ErrorCode::Retry,
            format!("signing key {} has {MAX_OPEN_SESSIONS_PER_KEY} upload sessions open: complete or cancel some first", key.key_id),
        ));
    }
    let grace = state.config.signing_keys.completion_grace.as_secs() as i64;
    let row = UploadSessionRow {
        id: hex::encode(rand::random::<[u8; 16]>()),
        cache_id: c.id,
        info: serde_json::to_string(&info).map_err(ApiError::internal)?,
        key_id: key.key_id.clone(),
        statement_key: format!("{}:{}", key.key_id, obj.signed.nonce),
        nar_size: obj.nar_size,
        part_size: layout.part_size as i64,
        expires_at: key.not_after.saturating_add(grace),
        outcome: None,
    };
    if !state.db.open_upload_session(&row).await? {
        return Err(crate::error::statement_replayed());
    }
    tracing::info!(path = %info.store_path, cache = %c.name, key = %key.key_id, parts = layout.count(), "upload session opened");
    Ok(Json(UploadSessionStart {
        outcome: None,
        session: Some(UploadSession {
            id: row.id,
            part_size: layout.part_size,
            part_count: layout.count(),
            received: Vec::new(),
            expires_at: row.expires_at,
        }),
    }))
}

/// An open session, its statement and its key, if the key may still go on.
struct OpenSession {
    row: UploadSessionRow,
    info: UploadPathNarInfo,
    key: UploadKeyRow,
    layout: PartLayout,
}

/// The session `id`, if `caller` may push to its cache and (with
/// `key_must_go_on`) its key may still send and complete.
async fn open_session(
    state: &AppState,
    caller: &Caller,
    id: &str,
    key_must_go_on: bool,
) -> ApiResult<OpenSession> {
    let missing = || {
        ApiError::new(
            ErrorCode::NoSuchUpload,
            format!("no upload session {id:?}: it never existed, or it expired and was reclaimed"),
        )
    };
    // Ids are 32 lowercase hex digits; anything else is not looked up.
    if id.len() != 32
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(missing());
    }
    let row = state.db.upload_session(id).await?.ok_or_else(missing)?;
    let info: UploadPathNarInfo = serde_json::from_str(&row.info).map_err(ApiError::internal)?;
    // A caller who may not push there learns nothing of the session.
    if !access::may(
        state,
        caller,
        Action::Push,
        &cache_of(state, &info, &row).await?,
    ) {
        return Err(missing());
    }
    let key_id = info.key_id.as_deref().unwrap_or_default();
    let key = state
        .db
        .upload_key_by_id(key_id)
        .await?
        .ok_or_else(missing)?;
    let facts = UploadKeyFacts {
        revoked: key.revoked,
        not_before: key.not_before,
        not_after: key.not_after,
        cache_id: key.cache_id,
    };
    let grace = state.config.signing_keys.completion_grace.as_secs() as i64;
    let now = crate::clock::now();
    let verdict = if key_must_go_on {
        check_session_key(facts, row.cache_id, now, grace)
    } else {
        Ok(())
    };
    verdict.map_err(|code| match code {
        ErrorCode::KeyRevoked => ApiError::new(code, format!("signing key {key_id} has been revoked")),
        ErrorCode::KeyExpired => ApiError::new(
            code,
            format!(
                "this upload's signing key {key_id} expired at {} (server time now {now}, grace {grace} s); start again with a fresh key",
                key.not_after
            ),
        ),
        _ => missing(),
    })?;
    let layout = PartLayout::new(row.nar_size as u64, row.part_size as u64);
    Ok(OpenSession {
        row,
        info,
        key,
        layout,
    })
}

/// The session's cache, as it is now: gone (or recreated under its name)
/// reads as a missing session.
async fn cache_of(
    state: &AppState,
    info: &UploadPathNarInfo,
    row: &UploadSessionRow,
) -> ApiResult<crate::db::caches::CacheRow> {
    state
        .db
        .cache_by_name(&info.cache)
        .await?
        .filter(|c| c.id == row.cache_id)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NoSuchUpload,
                format!(
                    "no upload session {:?}: it never existed, or it expired and was reclaimed",
                    row.id
                ),
            )
        })
}

fn completed(outcome: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidPart,
        format!("this upload was completed ({outcome}); it takes no more parts"),
    )
}

/// `PUT /_api/v1/upload-sessions/{id}/parts/{n}`: part `n`, exactly its
/// size. Sending a part again replaces it.
pub async fn put_part(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((id, part)): Path<(String, u64)>,
    body: Body,
) -> ApiResult<Json<PartReceived>> {
    let s = open_session(&state, &caller, &id, true).await?;
    if let Some(outcome) = &s.row.outcome {
        return Err(completed(outcome));
    }
    let size = s
        .layout
        .size_of(part)
        .map_err(|e| ApiError::new(ErrorCode::InvalidPart, e.to_string()))?;
    let key = part_key(&id, part);
    let body = body.into_data_stream().map_err(std::io::Error::other);
    match state
        .storage
        .put_exact(&key, body, size)
        .await
        .map_err(ApiError::storage)?
    {
        StreamPut::Stored => {}
        StreamPut::WrongSize(got) => {
            let e = s.layout.check(part, got).expect_err("the size differs");
            return Err(ApiError::new(ErrorCode::InvalidPart, e.to_string()));
        }
        StreamPut::BodyFailed(e) => {
            return Err(ApiError::new(
                ErrorCode::UploadInterrupted,
                format!("part {part} did not arrive whole: {e}"),
            ))
        }
    }
    if !state
        .db
        .record_upload_part(&id, part as i64, size as i64)
        .await?
    {
        // Completed or reclaimed while this part streamed in.
        let _ = state.storage.delete(&key).await;
        return Err(ApiError::new(
            ErrorCode::NoSuchUpload,
            format!("upload session {id:?} ended while part {part} arrived"),
        ));
    }
    Ok(Json(PartReceived { part, size }))
}

/// `GET /_api/v1/upload-sessions/{id}`: the parts the server holds, to
/// resume from.
pub async fn status(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<UploadSession>> {
    let s = open_session(&state, &caller, &id, true).await?;
    Ok(Json(session_answer(&state, &s).await?))
}

async fn session_answer(state: &AppState, s: &OpenSession) -> ApiResult<UploadSession> {
    let received = state
        .db
        .upload_session_parts(&s.row.id)
        .await?
        .into_iter()
        .filter(|(n, size)| s.layout.check(*n as u64, *size as u64).is_ok())
        .map(|(n, _)| n as u64)
        .collect();
    Ok(UploadSession {
        id: s.row.id.clone(),
        part_size: s.layout.part_size,
        part_count: s.layout.count(),
        received,
        expires_at: s.row.expires_at,
    })
}

/// `POST /_api/v1/upload-sessions/{id}/complete`: streams the parts, in
/// order, through the ingest's checks and commits the path; its parts are
/// deleted whatever the outcome. Completing again answers the same outcome.
pub async fn complete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<UploadResult>> {
    let s = open_session(&state, &caller, &id, true).await?;
    if let Some(outcome) = &s.row.outcome {
        return Ok(Json(UploadResult {
            outcome: parse_outcome(outcome)?,
        }));
    }
    let count = s.layout.count();
    let stored = state.db.upload_parts_stored(&id).await? as u64;
    if stored < count {
        return Err(ApiError::new(
            ErrorCode::UploadIncomplete,
            format!("{} of {count} parts have not arrived", count - stored),
        ));
    }
    let now = crate::clock::now();
    if !state
        .db
        .claim_upload_completion(&id, now, now + COMPLETION_CLAIM_SECS)
        .await?
    {
        return match state.db.upload_session(&id).await?.and_then(|r| r.outcome) {
            Some(outcome) => Ok(Json(UploadResult {
                outcome: parse_outcome(&outcome)?,
            })),
            None => Err(ApiError::new(
                ErrorCode::Retry,
                "this upload is being completed by another request: ask again in a moment",
            )),
        };
    }
    let c = cache_of(&state, &s.info, &s.row).await?;
    let key = s.key;
    let obj = new_object(&state, &c, &key, &s.info).await?;
    let keys: Vec<String> = (0..count).map(|n| part_key(&id, n)).collect();
    let reader = tokio_util::io::StreamReader::new(state.storage.read_concatenated(keys));
    let result = ingest_and_commit(&state, &c, &key, &s.info, &obj, reader).await;
    match &result {
        Ok(done) => {
            let outcome = serde_json::to_value(done.0.outcome).map_err(ApiError::internal)?;
            state
                .db
                .finish_upload_session(&id, outcome.as_str().unwrap_or("uploaded"))
                .await?;
            delete_parts(&state, &id).await;
        }
        // The parts cannot make this NAR: the session is over.
        Err(e) if is_final(e.code) => {
            state.db.delete_upload_session(&id).await?;
            delete_parts(&state, &id).await;
        }
        // Storage or the database failed: the parts stay for a retry.
        Err(_) => state.db.release_upload_completion(&id).await?,
    }
    result
}

fn parse_outcome(outcome: &str) -> ApiResult<UploadOutcome> {
    serde_json::from_value(serde_json::Value::String(outcome.to_string()))
        .map_err(ApiError::internal)
}

/// Refusals after which completing the same parts again cannot succeed.
fn is_final(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::MalformedNar
            | ErrorCode::NarHashMismatch
            | ErrorCode::NarSizeMismatch
            | ErrorCode::NarHashConflict
            | ErrorCode::StatementMismatch
            | ErrorCode::KeyRevoked
            | ErrorCode::KeyExpired
            | ErrorCode::InvalidNarInfo
    )
}

/// `DELETE /_api/v1/upload-sessions/{id}`: gives the upload up now rather
/// than at expiry.
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::http::StatusCode> {
    // Whatever its key's state: the owner may give the parts back.
    let s = open_session(&state, &caller, &id, false).await?;
    state.db.delete_upload_session(&id).await?;
    delete_parts(&state, &id).await;
    tracing::info!(path = %s.info.store_path, "upload session cancelled");
    Ok(axum::http::StatusCode::NO_CONTENT)
}

fn session_prefix(session: &str) -> String {
    format!("{UPLOADS_PREFIX}/{session}")
}

/// Best effort: what is left is reclaimed by GC's sweep of `uploads/`.
async fn delete_parts(state: &AppState, session: &str) {
    if let Err(e) = state.storage.delete_prefix(&session_prefix(session)).await {
        tracing::warn!("cannot delete the parts of upload session {session}: {e:#}");
    }
}

/// Reclaims sessions that can no longer complete and part objects no
/// session names (written as their session ended): GC's step for uploads.
pub async fn reclaim(state: &AppState, now: i64, sweep_before: i64) -> anyhow::Result<u64> {
    let mut reclaimed = 0;
    loop {
        let expired = state.db.expired_upload_sessions(now, 500).await?;
        if expired.is_empty() {
            break;
        }
        for id in expired {
            state.storage.delete_prefix(&session_prefix(&id)).await?;
            state.db.delete_upload_session(&id).await?;
            reclaimed += 1;
        }
    }
    // Objects of sessions that are gone (a cache destroyed, a part that
    // arrived as its session ended): a session's row is written before
    // any of its parts, so these are garbage once the write in flight is
    // over.
    let sweep_before = sweep_before.max(now - STRAY_PART_AGE_SECS);
    let mut stray: Vec<(String, String)> = Vec::new();
    let mut listing = state.storage.list(UPLOADS_PREFIX);
    while let Some((key, modified)) = listing.try_next().await? {
        if modified >= sweep_before {
            continue;
        }
        if let Some(id) = key.split('/').nth(1) {
            stray.push((id.to_string(), key));
        }
    }
    let ids: Vec<String> = stray.iter().map(|(id, _)| id.clone()).collect();
    let known = state.db.known_upload_sessions(&ids).await?;
    let mut gone: Vec<&String> = stray
        .iter()
        .map(|(id, _)| id)
        .filter(|id| !known.contains(*id))
        .collect();
    gone.sort();
    gone.dedup();
    for id in gone {
        state.storage.delete_prefix(&session_prefix(id)).await?;
        reclaimed += 1;
    }
    Ok(reclaimed)
}
