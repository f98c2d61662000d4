//! Whether an upload may go to its cache. Asking which paths are missing is
//! a push permission (the token's); storing a path needs the statement's
//! signature by an upload key certified for that cache and valid now. A
//! bearer token alone never stores anything.

use provenix_policy::{check_upload_key, Action, UploadKeyFacts};
use provenix_provenance::exchange::{decode_public_key, verify};
use provenix_provenance::upload::UploadPathNarInfo;
use provenix_provenance::ErrorCode;

use crate::access;
use crate::db::caches::CacheRow;
use crate::db::upload_keys::UploadKeyRow;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The cache an upload goes to, if its statement is signed by an upload
/// key that is unrevoked, valid now (server clock) and certified for it.
pub async fn cache_for_signed_upload(
    state: &AppState,
    info: &UploadPathNarInfo,
) -> ApiResult<(CacheRow, UploadKeyRow)> {
    let signed = Signed {
        cache: &info.cache,
        key_id: info.key_id.as_deref(),
        signature: info.signature.as_deref(),
        bytes: &info.statement(),
        what: "upload statement",
    };
    cache_for_signed(state, signed).await
}

/// What a statement's signer says, to be checked.
pub struct Signed<'a> {
    pub cache: &'a str,
    pub key_id: Option<&'a str>,
    pub signature: Option<&'a str>,
    /// The bytes the signature is over.
    pub bytes: &'a [u8],
    /// What the statement is, for messages.
    pub what: &'a str,
}

/// The cache a signed statement goes to, if it is signed by an upload key
/// that is unrevoked, valid now (server clock) and certified for it.
pub async fn cache_for_signed(
    state: &AppState,
    signed: Signed<'_>,
) -> ApiResult<(CacheRow, UploadKeyRow)> {
    let Signed {
        cache: cache_name,
        key_id,
        signature,
        bytes,
        what,
    } = signed;
    access::check_name(Action::Push, cache_name)?;
    let (Some(key_id), Some(signature)) = (key_id, signature) else {
        return Err(ApiError::new(
            ErrorCode::UnsignedUpload,
            "uploads must be signed by a short-term key from /_api/v1/keys/exchange (provenix push does this)",
        ));
    };
    let key = state.db.upload_key_by_id(key_id).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownKey,
            format!("no signing key {key_id:?} was issued by this server"),
        )
    })?;
    let cache = state.db.cache_by_name(cache_name).await?;
    let now = crate::clock::now();
    let facts = UploadKeyFacts {
        revoked: key.revoked,
        not_before: key.not_before,
        not_after: key.not_after,
        cache_id: key.cache_id,
    };
    let verdict = check_upload_key(facts, cache.as_ref().map(|c| c.id), now);
    let refusal = |code: ErrorCode| {
        match code {
        ErrorCode::KeyRevoked => format!("signing key {key_id} has been revoked"),
        ErrorCode::KeyExpired => format!(
            "signing key {key_id} was valid until {} (server time now {now}); exchange for a fresh key",
            key.not_after
        ),
        _ => format!(
            "signing key {key_id} was issued for another cache, not {cache_name:?}"
        ),
    }
    };
    // The key's state before the signature, then the cache: a revoked or
    // expired key says so whatever it signed.
    if let Err(code @ (ErrorCode::KeyRevoked | ErrorCode::KeyExpired)) = verdict {
        return Err(ApiError::new(code, refusal(code)));
    }
    let public_key = decode_public_key(&key.public_key).map_err(ApiError::internal)?;
    verify(&public_key, bytes, signature).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidSignature,
            format!("the {what}'s signature does not verify with key {key_id}: {e}"),
        )
    })?;
    verdict.map_err(|code| ApiError::new(code, refusal(code)))?;
    let cache = cache.ok_or_else(|| {
        ApiError::new(
            ErrorCode::PermissionDenied,
            refusal(ErrorCode::PermissionDenied),
        )
    })?;
    Ok((cache, key))
}
