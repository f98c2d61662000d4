//! The Nix binary cache protocol: `nix-cache-info`, `<hash>.narinfo` signed at
//! fetch time, and NARs streamed from their stored chunks. Every failure to
//! find something is a 4xx: a 5xx would abort a Nix substitution.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use provenix_policy::Action;
use provenix_provenance::narinfo::NarInfo;
use provenix_provenance::store_path::validate_hash_part;
use provenix_provenance::ErrorCode;
use provenix_provenance::NarHash;
use std::sync::Arc;

use crate::access;
use crate::db::caches::CacheRow;
use crate::db::paths::PathRow;
use crate::error::{ApiError, ApiResult};
use crate::identity::caller::{Caller, PullCaller};
use crate::serve::pack_reads::{batch_reads, plan_reads};
use crate::serve::signed_narinfo::BodyKey;
use crate::state::AppState;

/// Last-access times are written at most this often per path.
const TOUCH_INTERVAL: i64 = 3600;

/// Chunk rows fetched at once while serving a NAR.
const CHUNK_PAGE: i64 = 1024;
/// Serving a NAR: the largest ranged read of a pack; the most bytes read in
/// one trip to the blocking pool (small reads of a NAR whose chunks are
/// spread over many packs share a trip); how many trips run ahead of the
/// client. More or larger reads in flight measured slower (the bytes leave
/// the CPU cache before they are sent); 512 KiB reads measured the same.
const READ_MAX: u64 = 1024 * 1024;
const BATCH_MAX: u64 = 1024 * 1024;
const BATCHES_AHEAD: usize = 3;

pub async fn nix_cache_info(
    State(state): State<Arc<AppState>>,
    PullCaller(caller): PullCaller,
    Path(cache): Path<String>,
) -> ApiResult<Response> {
    let c = access::authorize(&state, &caller, Action::Pull, &cache).await?;
    let body = format!(
        "StoreDir: {}\nWantMassQuery: 1\nPriority: {}\n",
        c.store_dir, c.priority
    );
    Ok(([(header::CONTENT_TYPE, "text/x-nix-cache-info")], body).into_response())
}

fn nar_file_name(store_path_hash: &str, compression: &str) -> String {
    match compression {
        "zstd" => format!("{store_path_hash}.nar.zst"),
        _ => format!("{store_path_hash}.nar"),
    }
}

/// The cache (refused as a pull is), its keys' version and
/// the path `hash` in it, in one query. A malformed hash looks up no path,
/// so the caller still gets the cache's visibility answer first.
async fn cache_and_path(
    state: &AppState,
    caller: &Caller,
    cache: &str,
    hash: Option<&str>,
) -> ApiResult<(CacheRow, i64, Option<PathRow>)> {
    access::check_name(Action::Pull, cache)?;
    let lookup_hash = hash.filter(|h| validate_hash_part(h).is_ok()).unwrap_or("");
    let (c, keys_version, obj) = match state.db.path_lookup(cache, lookup_hash).await? {
        Some(l) => (Some(l.cache), l.keys_version, l.path),
        None => (None, 0, None),
    };
    let c = access::check(state, caller, Action::Pull, cache, c)?;
    Ok((c, keys_version, obj))
}

fn no_such_path(hash: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NoSuchPath,
        format!("{hash} is not in this cache"),
    )
}

fn touch_later(state: &AppState, obj: &PathRow) {
    let now = crate::clock::now();
    if now - obj.last_accessed_at > TOUCH_INTERVAL {
        // Off the request path: retention bookkeeping must not slow pulls.
        let db = state.db.clone();
        let id = obj.id;
        tokio::spawn(async move {
            if let Err(e) = db.touch_path(id, now).await {
                tracing::warn!("cannot record access to object {id}: {e}");
            }
        });
    }
}

pub async fn narinfo(
    State(state): State<Arc<AppState>>,
    PullCaller(caller): PullCaller,
    Path((cache, file)): Path<(String, String)>,
) -> ApiResult<Response> {
    let hash = file.strip_suffix(".narinfo");
    let (c, keys_version, obj) = cache_and_path(&state, &caller, &cache, hash).await?;
    let hash =
        hash.ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no such file {file:?}")))?;
    validate_hash_part(hash).map_err(|e| ApiError::new(ErrorCode::NoSuchPath, e.to_string()))?;
    let obj = obj.ok_or_else(|| no_such_path(hash))?;
    touch_later(&state, &obj);
    let keys = state.key_ring.keys(&state.db, c.id, keys_version).await?;
    let now = crate::clock::now();
    let memo_key = BodyKey {
        object_id: obj.id,
        keys_version,
        signing_keys: keys.signing_at(now).count(),
    };
    let body = match state.signed_narinfos.get(&memo_key, &c.store_dir) {
        Some(body) => body,
        None => {
            let nar_hash = NarHash::parse(&obj.nar_hash).map_err(ApiError::internal)?;
            let references = obj.refs();
            let mut info = NarInfo {
                store_path: obj.store_path,
                url: format!("nar/{}", nar_file_name(hash, &obj.compression)),
                compression: obj.compression,
                file_hash: None,
                file_size: Some(obj.file_size as u64),
                nar_hash,
                nar_size: obj.nar_size as u64,
                references,
                deriver: obj.deriver,
                sigs: vec![],
                ca: obj.ca,
            };
            for key in keys.signing_at(now) {
                info.sign(&c.store_dir, key);
            }
            let body = Bytes::from(info.render());
            state
                .signed_narinfos
                .insert(memo_key, &c.store_dir, body.clone());
            body
        }
    };
    let mut resp = ([(header::CONTENT_TYPE, "text/x-nix-narinfo")], body).into_response();
    // Private answers must not be stored by shared proxies.
    let visibility = if c.is_public { "public" } else { "private" };
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!(
            "{visibility}, max-age={}",
            state.config.narinfo_max_age.as_secs()
        ))
        .expect("ascii"),
    );
    Ok(resp)
}

pub async fn nar(
    State(state): State<Arc<AppState>>,
    PullCaller(caller): PullCaller,
    method: Method,
    Path((cache, file)): Path<(String, String)>,
) -> ApiResult<Response> {
    let hash = file.split('.').next().unwrap_or_default();
    let (c, _, obj) = cache_and_path(&state, &caller, &cache, Some(hash)).await?;
    let not_found = || {
        ApiError::new(
            ErrorCode::NoSuchPath,
            format!("no NAR {file:?} in this cache"),
        )
    };
    validate_hash_part(hash).map_err(|_| not_found())?;
    let obj = obj.ok_or_else(|| no_such_path(hash))?;
    touch_later(&state, &obj);
    if file != nar_file_name(hash, &obj.compression) {
        return Err(not_found());
    }
    let mut resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-nix-nar")
        .header(header::CONTENT_LENGTH, obj.file_size.to_string());
    if !c.is_public {
        resp = resp.header(header::CACHE_CONTROL, "private");
    }
    if method == Method::HEAD {
        return resp.body(Body::empty()).map_err(ApiError::internal);
    }
    // The stored chunks are served byte for byte: concatenated zstd frames are
    // one valid zstd stream, so nothing is recompressed on the read path.
    // Content-Length is set, so a chunk failing mid-stream shows the client a
    // truncated transfer, never a short 200 it could take for the whole NAR.
    // The chunk list is read a page at a time and neighbouring chunks of a
    // pack are read together (up to 1 MiB a trip, three ahead): memory per pull
    // stays the same whatever the NAR's size.
    let db = state.db.clone();
    let nar_id = obj.nar_id;
    let reads = futures::stream::try_unfold(0i64, move |from| {
        let db = db.clone();
        async move {
            let page = db.nar_chunks(nar_id, from, CHUNK_PAGE).await?;
            if page.is_empty() {
                return Ok::<_, anyhow::Error>(None);
            }
            let next = from + page.len() as i64;
            let batches = batch_reads(plan_reads(page, READ_MAX), BATCH_MAX);
            Ok(Some((
                futures::stream::iter(batches.into_iter().map(Ok)),
                next,
            )))
        }
    })
    .try_flatten();
    let storage = state.storage.clone();
    let frames = reads
        .map_ok(move |batch| {
            let storage = storage.clone();
            let ranges = batch
                .into_iter()
                .map(|r| (r.pack_key, r.start..r.end))
                .collect();
            async move { storage.read_ranges(ranges).await }
        })
        .try_buffered(BATCHES_AHEAD)
        .map_ok(|frames| futures::stream::iter(frames.into_iter().map(Ok::<_, anyhow::Error>)))
        .try_flatten();
    // The first read before the answer's head: storage that is down gets a
    // 503 Nix retries, not a 200 that breaks off.
    let mut frames = Box::pin(frames);
    let first = match frames.next().await {
        Some(Err(e)) => return Err(ApiError::storage(format!("serving NAR: {e:#}"))),
        first => first,
    };
    let errors = state.metrics.internal_errors.clone();
    let body = futures::stream::iter(first)
        .chain(frames)
        .map_err(move |e| {
            // The answer has begun: the client sees the body end short.
            tracing::error!("serving NAR: {e:#}");
            errors
                .get_or_create(&crate::operate::metrics::Source { source: "storage" })
                .inc();
            std::io::Error::other(e)
        });
    resp.body(Body::from_stream(body))
        .map_err(ApiError::internal)
}
