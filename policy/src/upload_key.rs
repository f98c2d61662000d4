//! Whether a signed upload's key may push it: the key is the only thing
//! that authorizes an upload (a bearer token alone never does).

use provenix_provenance::ErrorCode;

/// What the server recorded of the key that signed the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadKeyFacts {
    pub revoked: bool,
    pub not_before: i64,
    pub not_after: i64,
    /// The cache the key was certified for.
    pub cache_id: i64,
}

/// `Ok` if a statement signed by `key` (its signature checked apart) may
/// go to the cache `target_cache_id` (None: no such cache) at `now`
/// (server clock). Checked in this order, so a revoked key says so even
/// after it expired.
pub fn check_upload_key(
    key: UploadKeyFacts,
    target_cache_id: Option<i64>,
    now: i64,
) -> Result<(), ErrorCode> {
    if key.revoked {
        return Err(ErrorCode::KeyRevoked);
    }
    if now > key.not_after || now < key.not_before {
        return Err(ErrorCode::KeyExpired);
    }
    if target_cache_id != Some(key.cache_id) {
        return Err(ErrorCode::PermissionDenied);
    }
    Ok(())
}

/// `Ok` if an upload whose key is valid until `not_after` may commit at
/// `completed_at`: the key is judged when the upload completes, not when it
/// started, with `grace` seconds for a NAR still streaming at expiry.
pub fn check_completion(not_after: i64, completed_at: i64, grace: i64) -> Result<(), ErrorCode> {
    if completed_at > not_after.saturating_add(grace) {
        Err(ErrorCode::KeyExpired)
    } else {
        Ok(())
    }
}

/// `Ok` if an upload session opened under `key` for cache `session_cache_id`
/// may go on at `now` (a part, a completion): the key is unrevoked, certified
/// for the session's cache, and its expiry plus `grace` has not passed
/// (what [`check_completion`] will ask at the end).
pub fn check_session_key(
    key: UploadKeyFacts,
    session_cache_id: i64,
    now: i64,
    grace: i64,
) -> Result<(), ErrorCode> {
    if key.revoked {
        return Err(ErrorCode::KeyRevoked);
    }
    if key.cache_id != session_cache_id {
        return Err(ErrorCode::PermissionDenied);
    }
    check_completion(key.not_after, now, grace)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: UploadKeyFacts = UploadKeyFacts {
        revoked: false,
        not_before: 100,
        not_after: 1000,
        cache_id: 7,
    };

    #[test]
    fn an_upload_is_judged_when_it_completes() {
        for (completed, grace, ok) in [
            (1000, 0, true),
            (1001, 0, false),
            (1030, 30, true),
            (1031, 30, false),
            (i64::MAX, 30, false),
        ] {
            assert_eq!(
                check_completion(1000, completed, grace).is_ok(),
                ok,
                "{completed} {grace}"
            );
        }
        assert_eq!(check_completion(i64::MAX, i64::MAX, 30), Ok(()));
    }

    #[test]
    fn an_upload_session_goes_on_until_its_key_expires_plus_grace() {
        let revoked = UploadKeyFacts {
            revoked: true,
            ..KEY
        };
        for (key, cache, now, want) in [
            (KEY, 7, 500, Ok(())),
            // Before not_before cannot happen (the session was opened with
            // the key valid); past expiry, within grace.
            (KEY, 7, 1030, Ok(())),
            (KEY, 7, 1031, Err(ErrorCode::KeyExpired)),
            (revoked, 7, 500, Err(ErrorCode::KeyRevoked)),
            (revoked, 7, 5000, Err(ErrorCode::KeyRevoked)),
            (KEY, 8, 500, Err(ErrorCode::PermissionDenied)),
        ] {
            assert_eq!(check_session_key(key, cache, now, 30), want, "{now}");
        }
    }

    #[test]
    fn the_upload_key_table() {
        let revoked = UploadKeyFacts {
            revoked: true,
            ..KEY
        };
        #[rustfmt::skip]
        type Case = (UploadKeyFacts, Option<i64>, i64, Result<(), ErrorCode>);
        let table: &[Case] = &[
            (KEY, Some(7), 500, Ok(())),
            (KEY, Some(7), 100, Ok(())),
            (KEY, Some(7), 1000, Ok(())),
            (KEY, Some(7), 99, Err(ErrorCode::KeyExpired)),
            (KEY, Some(7), 1001, Err(ErrorCode::KeyExpired)),
            (KEY, Some(8), 500, Err(ErrorCode::PermissionDenied)),
            (KEY, None, 500, Err(ErrorCode::PermissionDenied)),
            (revoked, Some(7), 500, Err(ErrorCode::KeyRevoked)),
            (revoked, Some(7), 5000, Err(ErrorCode::KeyRevoked)),
            (revoked, Some(8), 500, Err(ErrorCode::KeyRevoked)),
        ];
        for (key, target, now, want) in table {
            assert_eq!(
                check_upload_key(*key, *target, *now),
                *want,
                "{key:?} {target:?} {now}"
            );
        }
    }
}
