//! Nix's own HTTP binary cache upload (`nix copy --to
//! 'http://HOST/CACHE?secret-key=FILE'`, the token in a netrc): Nix PUTs
//! the compressed NAR, then its narinfo. The NAR is staged (checked against
//! the SHA-256 its name gives); the narinfo, signed by a Nix key an admin
//! registered for the token's subject (`provenix publisher add CACHE
//! --nix-key NAME:BASE64 --subject SUB`), sends the staged file through the
//! same ingest as a native upload (structure, NAR hash, size, chunking) and
//! the same commit. The path is visible only once both arrived; the
//! narinfo as received is the record's statement, its `Sig:` the signature.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use futures::TryStreamExt;
use provenix_policy::{check_upload_key, Action, UploadKeyFacts};
use provenix_provenance::nix_copy::{
    check_narinfo, parse_nar_file_name, signed_by, FileCompression, NixCopyError, NixCopyUpload,
};
use provenix_provenance::signing::PublicKey;
use provenix_provenance::store_path::validate_hash_part;
use provenix_provenance::upload::{UploadOutcome, UploadPathNarInfo, UploadResult};
use provenix_provenance::ErrorCode;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::io::AsyncRead;

use crate::access;
use crate::db::caches::CacheRow;
use crate::db::commit::{NewPath, SignedStatement};
use crate::db::staged_nars::Staged;
use crate::db::upload_keys::UploadKeyRow;
use crate::error::{ApiError, ApiResult};
use crate::identity::caller::Caller;
use crate::push::upload::{ingest_and_commit, precheck};
use crate::state::AppState;
use crate::storage::StreamPut;

/// Where staged NAR files are stored.
pub const STAGED_PREFIX: &str = "nix-copy";
/// A staged file no narinfo claimed within this long is reclaimed by GC.
pub const STAGED_NAR_AGE_SECS: i64 = 3600;
/// Narinfo bodies are small; 10,000 references fit in well under this.
const MAX_NARINFO_BODY: usize = 1 << 20;

fn staged_key(id: &str) -> String {
    format!("{STAGED_PREFIX}/{id}")
}

/// The Nix keys registered for the caller in `c`, parsed; refused when
/// there are none (nothing is staged or recorded for such a caller).
async fn registered_keys(
    state: &AppState,
    caller: &Caller,
    c: &CacheRow,
) -> ApiResult<Vec<(UploadKeyRow, PublicKey)>> {
    let rows = state.db.nix_keys_for(c.id, caller.subject()).await?;
    if rows.is_empty() {
        return Err(ApiError::new(
            ErrorCode::UnregisteredNixKey,
            format!(
                "no Nix key is registered for subject {:?} in cache {:?}: an admin registers the uploader's public key with `provenix publisher add {} --nix-key NAME:BASE64 --subject {}`",
                caller.subject(),
                c.name,
                c.name,
                caller.subject()
            ),
        ));
    }
    rows.into_iter()
        .map(|r| {
            let key = PublicKey::parse(&r.public_key).map_err(ApiError::internal)?;
            Ok((r, key))
        })
        .collect()
}

fn nix_copy_error(e: NixCopyError) -> ApiError {
    let code = match &e {
        NixCopyError::Compression(_) => ErrorCode::UnsupportedCompression,
        NixCopyError::FileHash { .. } => ErrorCode::FileHashMismatch,
        NixCopyError::FileName(_) => ErrorCode::InvalidRequest,
        _ => ErrorCode::InvalidNarInfo,
    };
    ApiError::new(code, e.to_string())
}

/// `PUT /{cache}/nar/{file}`: stages a NAR file for the narinfo to come.
pub async fn put_nar(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((cache, file)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let c = access::authorize(&state, &caller, Action::Push, &cache).await?;
    let name = parse_nar_file_name(&file).map_err(nix_copy_error)?;
    registered_keys(&state, &caller, &c).await?;
    let size: u64 = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "a NAR file PUT needs a Content-Length (Nix sends one)",
            )
            .with_status(StatusCode::LENGTH_REQUIRED)
        })?;
    let id = hex::encode(rand::random::<[u8; 16]>());
    let key = staged_key(&id);
    let hasher = Arc::new(std::sync::Mutex::new(Sha256::new()));
    let hashing = hasher.clone();
    let body = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .inspect_ok(move |b| hashing.lock().expect("not poisoned").update(b));
    match state
        .storage
        .put_exact(&key, body, size)
        .await
        .map_err(ApiError::storage)?
    {
        StreamPut::Stored => {}
        StreamPut::WrongSize(got) => {
            return Err(ApiError::new(
                ErrorCode::UploadInterrupted,
                format!("the body was {got} bytes, not the {size} its Content-Length gives"),
            ))
        }
        StreamPut::BodyFailed(e) => {
            return Err(ApiError::new(
                ErrorCode::UploadInterrupted,
                format!("the NAR file did not arrive whole: {e}"),
            ))
        }
    }
    let digest: [u8; 32] = std::mem::take(&mut *hasher.lock().expect("not poisoned"))
        .finalize()
        .into();
    if digest != name.file_hash.0 {
        delete_staged_object(&state, &id).await;
        return Err(ApiError::new(
            ErrorCode::FileHashMismatch,
            format!(
                "the file's SHA-256 is sha256:{}, not the {} its name gives; nothing was stored",
                provenix_provenance::nixbase32::encode(&digest),
                name.file_hash.to_nix_string()
            ),
        ));
    }
    let staged = state
        .db
        .stage_nar(&id, c.id, &file, size as i64, caller.subject())
        .await;
    match staged {
        Ok(Staged::New) => {}
        Ok(Staged::Already(_)) => delete_staged_object(&state, &id).await,
        Err(e) => {
            delete_staged_object(&state, &id).await;
            return Err(e.into());
        }
    }
    tracing::info!(cache = %c.name, sub = caller.subject(), %file, size, "nix copy: NAR file staged");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "staged": format!("nar/{file}"), "size": size })),
    ))
}

/// Best effort: what is left is swept by GC.
async fn delete_staged_object(state: &AppState, id: &str) {
    if let Err(e) = state.storage.delete(&staged_key(id)).await {
        tracing::warn!("cannot delete staged NAR file {id}: {e:#}");
    }
}

/// `PUT /{cache}/{hash}.narinfo`: the narinfo that makes a staged NAR a
/// path. Other files Nix may write (`.ls` listings, `nix-cache-info`) are
/// refused with the reason.
pub async fn put_narinfo(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((cache, file)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Json<UploadResult>> {
    let c = access::authorize(&state, &caller, Action::Push, &cache).await?;
    let Some(hash) = file.strip_suffix(".narinfo") else {
        let why = if file.ends_with(".ls") {
            "this cache stores no NAR listings: leave Nix's write-nar-listing off"
        } else {
            "only narinfo files and nar/ files can be PUT here (Nix's nix copy --to)"
        };
        return Err(ApiError::new(ErrorCode::InvalidRequest, why));
    };
    validate_hash_part(hash)
        .map_err(|e| ApiError::new(ErrorCode::InvalidStorePath, e.to_string()))?;
    let keys = registered_keys(&state, &caller, &c).await?;
    let bytes = axum::body::to_bytes(body, MAX_NARINFO_BODY)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::TooLarge,
                format!("a narinfo is at most {MAX_NARINFO_BODY} bytes"),
            )
        })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::new(ErrorCode::InvalidNarInfo, "the narinfo is not UTF-8"))?;
    let upload = check_narinfo(text, &c.store_dir, hash).map_err(nix_copy_error)?;
    let Some((key, signature)) = signed_by(&upload, &c.store_dir, &keys) else {
        let registered: Vec<&str> = keys.iter().map(|(_, k)| k.name()).collect();
        let signers: Vec<&str> = upload
            .info
            .sigs
            .iter()
            .filter_map(|s| s.split_once(':').map(|(n, _)| n))
            .collect();
        return Err(ApiError::new(
            ErrorCode::UnregisteredNixKey,
            format!(
                "the narinfo of {} is not signed by a Nix key registered for {:?} in this cache (registered: {registered:?}; it carries signatures by {signers:?}): run nix copy with ?secret-key=FILE of a registered key",
                upload.info.store_path,
                caller.subject()
            ),
        ));
    };
    check_key_now(key)?;
    let info = upload_info(&c, key, &upload, &signature);
    let obj = new_path(&state, &c, key, &upload, text, signature);
    let answer = match precheck(&state, &obj, &info).await {
        Ok(Some(done)) => return Ok(done),
        Ok(None) => ingest_staged(&state, &c, key, &info, &obj, &upload).await,
        Err(e) => Err(e),
    };
    match answer {
        // The same narinfo PUT again (Nix retrying): it is recorded.
        Err(e) if e.code == ErrorCode::StatementReplayed => Ok(Json(UploadResult {
            outcome: UploadOutcome::Exists,
        })),
        other => other,
    }
}

/// A registered key stops at revocation (not at expiry: it has none).
fn check_key_now(key: &UploadKeyRow) -> ApiResult<()> {
    let facts = UploadKeyFacts {
        revoked: key.revoked,
        not_before: key.not_before,
        not_after: key.not_after,
        cache_id: key.cache_id,
    };
    check_upload_key(facts, Some(key.cache_id), crate::clock::now()).map_err(|code| {
        ApiError::new(
            code,
            format!(
                "Nix key {} ({}) cannot sign uploads: {code}",
                key.key_id, key.public_key
            ),
        )
    })
}

/// The upload as the shared ingest and its answers describe one.
fn upload_info(
    c: &CacheRow,
    key: &UploadKeyRow,
    upload: &NixCopyUpload,
    signature: &str,
) -> UploadPathNarInfo {
    let absolute = |base: &String| format!("{}/{base}", c.store_dir);
    UploadPathNarInfo {
        cache: c.name.clone(),
        store_path: upload.info.store_path.clone(),
        nar_hash: upload.info.nar_hash,
        nar_size: upload.info.nar_size,
        references: upload.references.iter().map(absolute).collect(),
        deriver: upload.info.deriver.as_ref().map(absolute),
        ca: upload.info.ca.clone(),
        key_id: Some(key.key_id.clone()),
        nonce: None,
        signature: Some(signature.to_string()),
    }
}

fn new_path(
    state: &AppState,
    c: &CacheRow,
    key: &UploadKeyRow,
    upload: &NixCopyUpload,
    text: &str,
    signature: String,
) -> NewPath {
    NewPath {
        cache_id: c.id,
        store_path_hash: upload.store_path.hash_part().to_string(),
        store_path: upload.info.store_path.clone(),
        nar_hash: upload.info.nar_hash.to_nix_string(),
        // check_narinfo bounds nothing above; a NarSize past i64 fails the
        // ingest's size check.
        nar_size: i64::try_from(upload.info.nar_size).unwrap_or(i64::MAX),
        refs: upload.references.clone(),
        deriver: upload.info.deriver.clone(),
        ca: upload.info.ca.clone(),
        signed: SignedStatement {
            upload_key_row: key.id,
            statement: text.to_string(),
            signature,
            // A narinfo carries no nonce: the same text records once.
            nonce: format!("narinfo-{}", hex::encode(Sha256::digest(text.as_bytes()))),
            remember_until: key
                .not_after
                .saturating_add(state.config.signing_keys.completion_grace.as_secs() as i64),
        },
    }
}

/// Streams the staged file the narinfo names, decompressed, through the
/// ingest and commit; the staged file goes whatever the outcome but a
/// transient failure (storage or database away: Nix may PUT the narinfo
/// again).
async fn ingest_staged(
    state: &AppState,
    c: &CacheRow,
    key: &UploadKeyRow,
    info: &UploadPathNarInfo,
    obj: &NewPath,
    upload: &NixCopyUpload,
) -> ApiResult<Json<UploadResult>> {
    let until = crate::clock::now() + state.config.max_upload_duration.as_secs() as i64;
    let staged = state
        .db
        .claim_staged_nar(c.id, &upload.file, until)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::UploadIncomplete,
                format!(
                    "no NAR file {} was PUT to this cache (or it was reclaimed an hour after): PUT it, then the narinfo",
                    upload.info.url
                ),
            )
        })?;
    if let Some(size) = upload.info.file_size {
        if size != staged.file_size as u64 {
            discard(state, &staged.id).await;
            return Err(ApiError::new(
                ErrorCode::FileHashMismatch,
                format!(
                    "FileSize {size} is not the {} bytes of {}",
                    staged.file_size, upload.info.url
                ),
            ));
        }
    }
    let stream = state
        .storage
        .read_concatenated(vec![staged_key(&staged.id)]);
    let file = tokio::io::BufReader::new(tokio_util::io::StreamReader::new(stream));
    let reader: Box<dyn AsyncRead + Unpin + Send> = match upload.file_name.compression {
        FileCompression::None => Box::new(file),
        FileCompression::Xz => Box::new(async_compression::tokio::bufread::XzDecoder::new(file)),
        FileCompression::Zstd => {
            Box::new(async_compression::tokio::bufread::ZstdDecoder::new(file))
        }
    };
    let answer = ingest_and_commit(state, c, key, info, obj, reader).await;
    let transient = matches!(&answer, Err(e) if matches!(
        e.code,
        ErrorCode::StorageUnavailable | ErrorCode::DatabaseUnavailable | ErrorCode::Retry
    ));
    if !transient {
        discard(state, &staged.id).await;
    }
    answer
}

async fn discard(state: &AppState, id: &str) {
    delete_staged_object(state, id).await;
    if let Err(e) = state.db.delete_staged_nar(id).await {
        tracing::warn!("cannot forget staged NAR file {id}: {e}");
    }
}

/// Reclaims staged files no narinfo claimed within an hour, and objects
/// under `nix-copy/` no row names (a PUT cut short before its row): GC's
/// step for `nix copy` uploads.
pub async fn reclaim(state: &AppState, now: i64) -> anyhow::Result<u64> {
    let before = now - STAGED_NAR_AGE_SECS;
    let mut reclaimed = 0;
    loop {
        let old = state.db.reclaimable_staged_nars(before, now, 500).await?;
        if old.is_empty() {
            break;
        }
        for id in old {
            state.storage.delete(&staged_key(&id)).await?;
            state.db.delete_staged_nar(&id).await?;
            reclaimed += 1;
        }
    }
    let mut stray = Vec::new();
    let mut listing = state.storage.list(STAGED_PREFIX);
    while let Some((key, modified)) = listing.try_next().await? {
        if modified < before {
            if let Some(id) = key.strip_prefix(&format!("{STAGED_PREFIX}/")) {
                stray.push(id.to_string());
            }
        }
    }
    let known = state.db.known_staged_nars(&stray).await?;
    for id in stray.iter().filter(|id| !known.contains(*id)) {
        state.storage.delete(&staged_key(id)).await?;
        reclaimed += 1;
    }
    Ok(reclaimed)
}
