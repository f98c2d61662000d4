//! What auditors and admins read and do about history: provenance records,
//! keys issued, divergences, the in-toto export, revocation and its feed.

pub mod provenance;
pub mod revocation;

use provenix_provenance::audit::IdentitySelector;
use provenix_provenance::ErrorCode;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Refuses a selector that names identities by something only unique
/// within one issuer (a repository, workflow, run or subject) when the keys
/// it matches in `cache_ids` came from more than one issuer: a revocation
/// of "repository 42" must not take GitLab's repository 42 with GitHub's.
pub async fn require_one_issuer(
    state: &AppState,
    cache_ids: &[i64],
    selector: &IdentitySelector,
) -> ApiResult<()> {
    if !selector.needs_issuer() {
        return Ok(());
    }
    let issuers = state.db.issuers_matching(cache_ids, selector).await?;
    if issuers.len() > 1 {
        return Err(ApiError::new(
            ErrorCode::AmbiguousSelector,
            format!(
                "this selector matches identities from more than one issuer ({}); name one with --issuer",
                issuers.join(", ")
            ),
        ));
    }
    Ok(())
}
