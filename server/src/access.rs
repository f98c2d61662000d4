//! The one choke point of access: every handler that acts on a cache asks
//! [`authorize`] (or [`check`], when its own query already read the cache)
//! and gets the cache or the refusal to send. The decision itself is pure,
//! in `provenix_policy::access`; this module only gathers its facts.

use provenix_policy::{decide, validate_cache_name, Action, CacheFacts, CallerFacts, Decision};

use crate::db::caches::CacheRow;
use crate::error::{ApiError, ApiResult};
use crate::identity::caller::Caller;
use crate::state::AppState;

fn caller_facts(caller: &Caller, cache: &str) -> CallerFacts {
    CallerFacts {
        authenticated: !caller.is_anonymous(),
        refused_credential: caller.refused.as_ref().map(|r| r.code),
        permission: caller.permission(cache),
    }
}

fn facts(state: &AppState, cache: Option<&CacheRow>) -> CacheFacts {
    CacheFacts {
        exists: cache.is_some(),
        is_public: cache.is_some_and(|c| c.is_public),
        public_audit: state.config.public_audit,
    }
}

/// Whether `caller` may do `action` on `cache` (already read), as a bool:
/// for filters over many caches, where a refusal is not sent.
pub fn may(state: &AppState, caller: &Caller, action: Action, cache: &CacheRow) -> bool {
    decide(
        action,
        facts(state, Some(cache)),
        caller_facts(caller, &cache.name),
    ) == Decision::Allow
}

/// What a cache listing shows of `cache` to `caller`: none if it is hidden
/// from them, else the actions they may take on it.
pub fn listing(state: &AppState, caller: &Caller, cache: &CacheRow) -> Option<Vec<Action>> {
    provenix_policy::access::listing(facts(state, Some(cache)), caller_facts(caller, &cache.name))
}

/// The decision for a cache the handler has read itself (`None`: missing).
pub fn check(
    state: &AppState,
    caller: &Caller,
    action: Action,
    name: &str,
    cache: Option<CacheRow>,
) -> ApiResult<CacheRow> {
    match decide(
        action,
        facts(state, cache.as_ref()),
        caller_facts(caller, name),
    ) {
        Decision::Allow => cache.ok_or_else(|| ApiError::no_such_cache(name)),
        Decision::Refuse(r) => Err(match &caller.refused {
            // The token's own refusal says what is wrong with it.
            Some(refused) if refused.code == r.code => {
                ApiError::new(refused.code, refused.message.clone())
            }
            _ => ApiError::new(r.code, r.message(action, name, caller.subject())),
        }),
    }
}

/// A name outside the allowed syntax, refused as `action` refuses it.
pub fn check_name(action: Action, name: &str) -> ApiResult<()> {
    validate_cache_name(name).map_err(|e| {
        let code = action.invalid_name_code();
        if code == provenix_provenance::ErrorCode::NoSuchCache {
            ApiError::no_such_cache(name)
        } else {
            ApiError::new(code, e.to_string())
        }
    })
}

/// The cache `name` if `caller` may do `action` on it; otherwise the
/// refusal the policy chose, which says no more than it allows.
pub async fn authorize(
    state: &AppState,
    caller: &Caller,
    action: Action,
    name: &str,
) -> ApiResult<CacheRow> {
    check_name(action, name)?;
    let cache = state.db.cache_by_name(name).await?;
    check(state, caller, action, name, cache)
}

/// [`authorize`] on the cache's row as read in the last second (see
/// `db::recent_caches`): for the log's tiles, which any proxy may keep a
/// year; the decision itself is the same one.
pub async fn authorize_recent(
    state: &AppState,
    caller: &Caller,
    action: Action,
    name: &str,
) -> ApiResult<CacheRow> {
    check_name(action, name)?;
    let cache = state.db.recent_cache_by_name(name).await?;
    check(state, caller, action, name, cache)
}

/// Whether `caller` may create a cache named `name` (the name unread:
/// whether it is taken is the create's own answer).
pub fn authorize_create(state: &AppState, caller: &Caller, name: &str) -> ApiResult<()> {
    check_name(Action::Create, name)?;
    match decide(
        Action::Create,
        facts(state, None),
        caller_facts(caller, name),
    ) {
        Decision::Allow => Ok(()),
        Decision::Refuse(r) => Err(ApiError::new(
            r.code,
            r.message(Action::Create, name, caller.subject()),
        )),
    }
}
