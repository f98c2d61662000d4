//! Provenance for auditors: the records of one store path, uploads and keys
//! filtered by identity and time, divergences, and an in-toto export signed
//! by the cache key. Needs the audit permission or configure-cache: a public
//! cache's contents are public, who pushed them is not (unless the server
//! sets `public-audit = true`).

use axum::extract::{Path, Query, State};
use axum::Json;
use provenix_policy::Action;
use provenix_provenance::attestation;
use provenix_provenance::audit::{
    AuditQuery, ClosureRecord, DivergenceRecord, KeyRecord, Page, Provenance, UploadRecord,
};
use provenix_provenance::store_path::validate_hash_part;
use provenix_provenance::{ErrorCode, NarHash, SecretKey};
use std::collections::HashMap;
use std::sync::Arc;

use crate::access;
use crate::db::audit::page_size;
use crate::db::caches::CacheRow;
use crate::error::{ApiError, ApiResult};
use crate::identity::caller::Caller;
use crate::state::AppState;

/// Accepts a store path, its base name or its 32-character hash.
fn hash_of(path: &str) -> ApiResult<String> {
    let base = path.rsplit('/').next().unwrap_or(path);
    let hash = base.get(..32).unwrap_or(base);
    validate_hash_part(hash)
        .map_err(|e| ApiError::new(ErrorCode::InvalidStorePath, e.to_string()))?;
    Ok(hash.to_string())
}

fn next_cursor<T>(items: &[T], q: &AuditQuery, id: impl Fn(&T) -> i64) -> Option<i64> {
    (items.len() as i64 == page_size(q))
        .then(|| items.last().map(id))
        .flatten()
}

async fn provenance_of(state: &AppState, c: &CacheRow, hash: &str) -> ApiResult<Provenance> {
    let all = AuditQuery {
        limit: Some(provenix_provenance::audit::MAX_PAGE),
        ..AuditQuery::default()
    };
    let mut uploads = state
        .db
        .upload_records(c.id, Some(hash), &all, true)
        .await?;
    add_log_proofs(state, c, &mut uploads).await?;
    let divergences = state.db.divergence_records(c.id, Some(hash), &all).await?;
    let (closures, more_closures) = state.db.closure_records(c.id, Some(hash), &all).await?;
    let store_path = uploads
        .first()
        .map(|u| u.store_path.clone())
        .or_else(|| divergences.first().map(|d| d.store_path.clone()));
    Ok(Provenance {
        store_path,
        uploads,
        divergences,
        closures,
        more_closures,
    })
}

/// Each record's and its key's tlog-proof in the published checkpoint, so
/// the answer (and the in-toto export made of it) verifies offline.
async fn add_log_proofs(
    state: &AppState,
    c: &CacheRow,
    uploads: &mut [UploadRecord],
) -> ApiResult<()> {
    let Some(head) = state.db.log_head(c.id).await? else {
        return Ok(());
    };
    let mut made: HashMap<i64, Option<String>> = HashMap::new();
    for u in uploads.iter_mut() {
        for (index, slot) in [
            (u.log_index, &mut u.tlog_proof),
            (u.key.log_index, &mut u.key.tlog_proof),
            (u.key.ca_log_index, &mut u.key.ca_tlog_proof),
        ] {
            let Some(index) = index else { continue };
            let proof = match made.get(&index) {
                Some(p) => p.clone(),
                None => {
                    let p = state.db.log_proof(c.id, &head, index).await?;
                    made.insert(index, p.clone());
                    p
                }
            };
            *slot = proof;
        }
    }
    Ok(())
}

pub async fn provenance(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((cache, path)): Path<(String, String)>,
) -> ApiResult<Json<Provenance>> {
    let c = access::authorize(&state, &caller, Action::Audit, &cache).await?;
    let hash = hash_of(&path)?;
    let p = provenance_of(&state, &c, &hash).await?;
    if p.store_path.is_none() {
        return Err(ApiError::new(
            ErrorCode::NoProvenance,
            format!("cache {cache:?} has no upload record for {path}"),
        ));
    }
    Ok(Json(p))
}

/// The path's provenance as an in-toto Statement v1 in a DSSE envelope,
/// signed by the cache's current key: verifiable offline with the key Nix
/// users already trust.
pub async fn in_toto(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((cache, path)): Path<(String, String)>,
) -> ApiResult<Json<attestation::Envelope>> {
    let c = access::authorize(&state, &caller, Action::Audit, &cache).await?;
    let hash = hash_of(&path)?;
    let p = provenance_of(&state, &c, &hash).await?;
    // The subject is what the cache serves now: the path's row, read
    // here. A path not served (deleted, expired, or every record revoked)
    // is attested as such, with its first record's NAR as the subject.
    let Some(first) = p.uploads.first() else {
        return Err(ApiError::new(
            ErrorCode::NoProvenance,
            format!("cache {cache:?} has no upload record for {path}"),
        ));
    };
    let served = state
        .db
        .path_lookup(&c.name, &hash)
        .await?
        .and_then(|l| l.path);
    let revoked = p.uploads.iter().all(UploadRecord::is_revoked)
        && p.closures.iter().all(ClosureRecord::is_revoked);
    let (store_path, nar_hash, nar_size) = match &served {
        Some(row) => (row.store_path.clone(), row.nar_hash.clone(), row.nar_size),
        None => (
            first.store_path.clone(),
            first.nar_hash.clone(),
            first.nar_size,
        ),
    };
    let parsed_hash = NarHash::parse(&nar_hash).map_err(ApiError::internal)?;
    let predicate = serde_json::json!({
        "cache": c.name,
        "server": state.api_endpoint,
        "storePath": store_path,
        "narHash": nar_hash,
        "narSize": nar_size,
        attestation::EXPORTED_AT: crate::clock::now(),
        attestation::SERVED: served.is_some(),
        attestation::REVOKED: revoked,
        "uploads": p.uploads,
        "divergences": p.divergences,
        "closures": p.closures,
    });
    let st = attestation::statement(&store_path, &parsed_hash, predicate);
    let keys = state.db.cache_keys(c.id, crate::clock::now()).await?;
    let key = keys
        .first()
        .ok_or_else(|| ApiError::internal("cache has no signing key"))?;
    let secret = SecretKey::parse(&key.secret).map_err(ApiError::internal)?;
    Ok(Json(attestation::sign(&st, &secret)))
}

pub async fn uploads(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(cache): Path<String>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Page<UploadRecord>>> {
    let c = access::authorize(&state, &caller, Action::Audit, &cache).await?;
    super::require_one_issuer(&state, &[c.id], &q.identity).await?;
    let items = state.db.upload_records(c.id, None, &q, false).await?;
    let next_cursor = next_cursor(&items, &q, |u| u.id);
    Ok(Json(Page { items, next_cursor }))
}

pub async fn closures(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(cache): Path<String>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Page<ClosureRecord>>> {
    let c = access::authorize(&state, &caller, Action::Audit, &cache).await?;
    super::require_one_issuer(&state, &[c.id], &q.identity).await?;
    let (items, cut) = state.db.closure_records(c.id, None, &q).await?;
    let next_cursor = if cut {
        items.last().map(|s| s.id)
    } else {
        next_cursor(&items, &q, |s| s.id)
    };
    Ok(Json(Page { items, next_cursor }))
}

pub async fn keys(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(cache): Path<String>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Page<KeyRecord>>> {
    let c = access::authorize(&state, &caller, Action::Audit, &cache).await?;
    super::require_one_issuer(&state, &[c.id], &q.identity).await?;
    let rows = state.db.key_records(c.id, &q).await?;
    let next_cursor = next_cursor(&rows, &q, |(id, _)| *id);
    Ok(Json(Page {
        items: rows.into_iter().map(|(_, k)| k).collect(),
        next_cursor,
    }))
}

pub async fn divergences(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(cache): Path<String>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Page<DivergenceRecord>>> {
    let c = access::authorize(&state, &caller, Action::Audit, &cache).await?;
    super::require_one_issuer(&state, &[c.id], &q.identity).await?;
    let items = state.db.divergence_records(c.id, None, &q).await?;
    let next_cursor = next_cursor(&items, &q, |d| d.id);
    Ok(Json(Page { items, next_cursor }))
}
