//! The one access decision: may this caller do this action on this cache,
//! and if not, what may the refusal say? Every handler of the server asks
//! [`decide`] (through `server/src/access.rs`) and acts on the answer; no
//! handler compares permissions itself.
//!
//! A refusal also fixes what it reveals, as Attic's `auth_cache` does: a
//! caller who may not see a cache gets the same answer for a hidden cache
//! and a missing one ([`Disclosure::Nothing`]).

use provenix_provenance::ErrorCode;

use crate::Permission;

/// What the caller wants to do with a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The Nix protocol (nix-cache-info, narinfo, NAR) and the revoked-paths feed.
    Pull,
    /// Asking which paths are missing, and exchanging an access token for
    /// an upload key.
    Push,
    /// Reading the cache's settings and public keys (`cache info`).
    ReadInfo,
    /// Creating a cache of this name.
    Create,
    /// Changing settings other than retention, rotating the cache key.
    Configure,
    /// Changing the retention period.
    ConfigureRetention,
    /// Setting a retention below `limits::RETENTION_FLOOR` (a deletion of
    /// every path not pulled within it), or a size limit below what the
    /// cache holds (a deletion of its least recently used paths): it needs
    /// `--delete` too.
    ConfigureShortRetention,
    /// Managing the cache's trusted publishers.
    ManagePublishers,
    /// Pinning paths and removing pins (they hold paths against GC, as
    /// retention does).
    ManagePins,
    Destroy,
    /// Deleting one path.
    DeletePath,
    /// Reading provenance: upload records, keys issued, divergences.
    Audit,
    /// Revoking keys and uploads.
    Revoke,
}

impl Action {
    pub const ALL: [Action; 13] = [
        Action::Pull,
        Action::Push,
        Action::ReadInfo,
        Action::Create,
        Action::Configure,
        Action::ConfigureRetention,
        Action::ConfigureShortRetention,
        Action::ManagePublishers,
        Action::ManagePins,
        Action::Destroy,
        Action::DeletePath,
        Action::Audit,
        Action::Revoke,
    ];

    /// The `make-token` flag that grants this action.
    pub fn flag(self) -> &'static str {
        match self {
            Action::Pull => "--pull",
            Action::Push => "--push",
            // Any permission on a cache lets its holder see it.
            Action::ReadInfo => "any permission on it",
            Action::Create => "--create-cache",
            Action::Configure | Action::ManagePublishers => "--configure-cache",
            Action::ConfigureRetention => "--configure-cache-retention",
            Action::ManagePins => "--configure-cache-retention (and --pull on a private cache)",
            Action::ConfigureShortRetention => "--configure-cache-retention and --delete",
            Action::Destroy => "--destroy-cache",
            Action::DeletePath => "--delete",
            Action::Audit => "--audit or --configure-cache",
            Action::Revoke => "--revoke",
        }
    }

    /// The refusal of a name outside the allowed syntax: on the Nix
    /// protocol it is a cache that does not exist; the API says why.
    pub fn invalid_name_code(self) -> ErrorCode {
        match self {
            Action::Pull => ErrorCode::NoSuchCache,
            _ => ErrorCode::InvalidCacheName,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Action::Pull => "pull from",
            Action::Push => "push to",
            Action::ReadInfo => "read",
            Action::Create => "create",
            Action::Configure => "configure",
            Action::ConfigureRetention => "change the retention of",
            Action::ConfigureShortRetention => {
                "set a retention under a day, or a size limit below what it holds, on"
            }
            Action::ManagePublishers => "manage the trusted publishers of",
            Action::ManagePins => "manage the pins of",
            Action::Destroy => "destroy",
            Action::DeletePath => "delete paths from",
            Action::Audit => "read the provenance of",
            Action::Revoke => "revoke in",
        }
    }
}

/// What the server knows of the cache, before deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheFacts {
    pub exists: bool,
    pub is_public: bool,
    /// The server's `public-audit`: a public cache's provenance is public too.
    pub public_audit: bool,
}

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallerFacts {
    /// Whether a valid token came with the request.
    pub authenticated: bool,
    /// A token came with the request and was refused (expired, bad
    /// signature, its session key revoked): the refusal's code.
    pub refused_credential: Option<ErrorCode>,
    /// The token's permission on this cache (the union over its patterns).
    pub permission: Permission,
}

/// What a refusal may tell the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disclosure {
    /// Nothing: the answer is the one a missing cache gets.
    Nothing,
    /// That the cache exists (the caller may see it, but not do this).
    CacheExists,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub disclosure: Disclosure,
}

impl Refusal {
    fn hidden(code: ErrorCode) -> Decision {
        Decision::Refuse(Refusal {
            code,
            disclosure: Disclosure::Nothing,
        })
    }

    fn denied() -> Decision {
        Decision::Refuse(Refusal {
            code: ErrorCode::PermissionDenied,
            disclosure: Disclosure::CacheExists,
        })
    }

    /// The one-line message for this refusal of `action` on `cache`, saying
    /// only what the disclosure allows. `subject` names the caller's token.
    pub fn message(&self, action: Action, cache: &str, subject: &str) -> String {
        match (self.code, self.disclosure) {
            (ErrorCode::Unauthorized, _) if action == Action::Pull => {
                format!("cache {cache:?} needs a token (or does not exist)")
            }
            (ErrorCode::Unauthorized, _) if action == Action::Push => {
                "pushing needs a token".into()
            }
            (ErrorCode::Unauthorized, _) => format!(
                "{} cache {cache:?} needs a token with {}",
                action.what(),
                action.flag()
            ),
            (ErrorCode::PermissionDenied, _) => format!(
                "your token ({subject}) may not {} cache {cache:?} (needs {})",
                action.what(),
                action.flag()
            ),
            _ => format!("cache {cache:?} does not exist or your token has no access to it"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Refuse(Refusal),
}

/// What the session token handed out with an upload key may do on its
/// cache: never more than the credential it came from. An access token's
/// holder keeps their own pull (push they must hold to exchange at all); a
/// CI job gets push, and pull only if its publisher grants it.
pub fn session_permission(credential: SessionCredential) -> Permission {
    Permission {
        push: true,
        pull: match credential {
            SessionCredential::AccessToken(p) => p.pull,
            SessionCredential::Publisher { grants_pull } => grants_pull,
        },
        ..Permission::default()
    }
}

/// What an exchange was paid with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCredential {
    /// A person's access token, with its permission on the cache.
    AccessToken(Permission),
    /// An OIDC token matched by a trusted publisher.
    Publisher { grants_pull: bool },
}

/// Whether the caller may see that the cache exists at all.
fn may_see(cache: CacheFacts, caller: CallerFacts) -> bool {
    cache.exists && (cache.is_public || !caller.permission.is_empty())
}

/// The refusal for a caller who may not see the cache: anonymous callers
/// of the Nix protocol and of pushes are asked for a token (401, which Nix
/// and the client turn into "log in"); everyone else is told "no such
/// cache". Both are the same for a hidden and a missing cache.
fn unseen(action: Action, caller: CallerFacts) -> Decision {
    if !caller.authenticated && matches!(action, Action::Pull | Action::Push | Action::DeletePath) {
        Refusal::hidden(ErrorCode::Unauthorized)
    } else {
        Refusal::hidden(ErrorCode::NoSuchCache)
    }
}

/// May `caller` do `action` on a cache with these `facts`?
pub fn decide(action: Action, cache: CacheFacts, caller: CallerFacts) -> Decision {
    if let Some(code) = caller.refused_credential {
        // A stale token in a netrc must not stop substitution from a public
        // cache, which anyone may read (Attic serves it too): the pull is
        // answered as an anonymous one. Everything else refuses the token,
        // the same for a private cache and a missing one.
        return if action == Action::Pull && cache.exists && cache.is_public {
            Decision::Allow
        } else {
            Refusal::hidden(code)
        };
    }
    let p = caller.permission;
    match action {
        Action::Create => {
            if p.create_cache {
                Decision::Allow
            } else {
                // Said without looking: whether the name is taken is told
                // only to those who may create it (as `cache-exists`).
                Decision::Refuse(Refusal {
                    code: ErrorCode::PermissionDenied,
                    disclosure: Disclosure::Nothing,
                })
            }
        }
        Action::Pull => {
            if cache.exists && (cache.is_public || p.pull) {
                Decision::Allow
            } else {
                unseen(action, caller)
            }
        }
        Action::Push => match () {
            _ if cache.exists && p.push => Decision::Allow,
            _ if may_see(cache, caller) => Refusal::denied(),
            _ => unseen(action, caller),
        },
        Action::DeletePath => {
            // Deleting a path starts from what the caller can pull.
            if !(cache.exists && (cache.is_public || p.pull)) {
                unseen(action, caller)
            } else if p.delete {
                Decision::Allow
            } else {
                Refusal::denied()
            }
        }
        Action::ReadInfo => {
            if may_see(cache, caller) {
                Decision::Allow
            } else {
                unseen(action, caller)
            }
        }
        Action::Configure
        | Action::ConfigureRetention
        | Action::ConfigureShortRetention
        | Action::ManagePublishers
        | Action::ManagePins
        | Action::Destroy
        | Action::Audit
        | Action::Revoke => {
            if !may_see(cache, caller) {
                return unseen(action, caller);
            }
            let granted = match action {
                Action::Configure | Action::ManagePublishers => p.configure_cache,
                Action::ConfigureRetention => p.configure_cache_retention,
                // Pinning tells whether the cache holds a path: only for
                // those who may pull from it.
                Action::ManagePins => p.configure_cache_retention && (p.pull || cache.is_public),
                Action::ConfigureShortRetention => p.configure_cache_retention && p.delete,
                Action::Destroy => p.destroy_cache,
                Action::Audit => {
                    p.audit || p.configure_cache || (cache.is_public && cache.public_audit)
                }
                Action::Revoke => p.revoke,
                _ => unreachable!("handled above"),
            };
            if granted {
                Decision::Allow
            } else {
                Refusal::denied()
            }
        }
    }
}

impl Action {
    /// The action's name in a cache listing's rights.
    pub fn name(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::ReadInfo => "read-info",
            Action::Create => "create",
            Action::Configure => "configure",
            Action::ConfigureRetention => "configure-retention",
            Action::ConfigureShortRetention => "configure-short-retention",
            Action::ManagePublishers => "manage-publishers",
            Action::ManagePins => "manage-pins",
            Action::Destroy => "destroy",
            Action::DeletePath => "delete-path",
            Action::Audit => "audit",
            Action::Revoke => "revoke",
        }
    }
}

/// What `provenix cache list` shows of a cache: none if the caller may not
/// see it (a private cache the caller has no right on is not listed, as it
/// answers as a missing one everywhere else), else every action the caller
/// may take on it, by the same decision each of them meets.
pub fn listing(cache: CacheFacts, caller: CallerFacts) -> Option<Vec<Action>> {
    let allowed = |a: Action| decide(a, cache, caller) == Decision::Allow;
    if !cache.exists || !(allowed(Action::ReadInfo) || allowed(Action::Pull)) {
        return None;
    }
    Some(
        Action::ALL
            .into_iter()
            .filter(|a| !matches!(a, Action::Create | Action::ReadInfo))
            .filter(|a| allowed(*a))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_shows_what_the_caller_may_see_with_its_rights() {
        let names =
            |l: Option<Vec<Action>>| l.map(|v| v.iter().map(|a| a.name()).collect::<Vec<_>>());
        assert_eq!(names(listing(PRIVATE, anonymous())), None);
        assert_eq!(names(listing(MISSING, only(Action::Pull))), None);
        assert_eq!(names(listing(PUBLIC, anonymous())), Some(vec!["pull"]));
        assert_eq!(
            names(listing(PRIVATE, only(Action::Push))),
            Some(vec!["push"])
        );
        assert_eq!(
            names(listing(PUBLIC_AUDITED, only(Action::Revoke))),
            Some(vec!["pull", "audit", "revoke"])
        );
        let stale = CallerFacts {
            refused_credential: Some(ErrorCode::Expired),
            ..only(Action::Push)
        };
        assert_eq!(
            names(listing(PRIVATE, stale)),
            None,
            "a refused token sees nothing private"
        );
        assert_eq!(names(listing(PUBLIC, stale)), Some(vec!["pull"]));
    }

    const MISSING: CacheFacts = CacheFacts {
        exists: false,
        is_public: false,
        public_audit: false,
    };
    const PRIVATE: CacheFacts = CacheFacts {
        exists: true,
        is_public: false,
        public_audit: false,
    };
    const PUBLIC: CacheFacts = CacheFacts {
        exists: true,
        is_public: true,
        public_audit: false,
    };
    const PUBLIC_AUDITED: CacheFacts = CacheFacts {
        exists: true,
        is_public: true,
        public_audit: true,
    };

    fn anonymous() -> CallerFacts {
        CallerFacts::default()
    }

    fn with(f: impl FnOnce(&mut Permission)) -> CallerFacts {
        let mut permission = Permission::default();
        f(&mut permission);
        CallerFacts {
            authenticated: true,
            refused_credential: None,
            permission,
        }
    }

    /// The permission that grants `action` and nothing else.
    fn only(action: Action) -> CallerFacts {
        with(|p| match action {
            Action::Pull | Action::ReadInfo => p.pull = true,
            Action::Push => p.push = true,
            Action::Create => p.create_cache = true,
            Action::Configure | Action::ManagePublishers => p.configure_cache = true,
            Action::ConfigureRetention => p.configure_cache_retention = true,
            Action::ManagePins => {
                p.configure_cache_retention = true;
                p.pull = true
            }
            Action::ConfigureShortRetention => {
                p.configure_cache_retention = true;
                p.delete = true
            }
            Action::Destroy => p.destroy_cache = true,
            Action::DeletePath => {
                p.pull = true;
                p.delete = true
            }
            Action::Audit => p.audit = true,
            Action::Revoke => p.revoke = true,
        })
    }

    fn code(d: Decision) -> Option<ErrorCode> {
        match d {
            Decision::Allow => None,
            Decision::Refuse(r) => Some(r.code),
        }
    }

    use ErrorCode::{NoSuchCache as Hidden, PermissionDenied as Denied, Unauthorized as Login};

    /// The answers on a missing, a private, a public and a public cache
    /// with `public-audit`, in that order; `None` is allow.
    type Row = [Option<ErrorCode>; 4];

    /// Every action, for each kind of caller and cache: the expected answer.
    #[test]
    fn the_access_table() {
        #[rustfmt::skip]
        let table: &[(Action, Row, Row, Row)] = &[
            //                      anonymous on               a token without it on       the one permission on
            //                      missing private public pa  missing private public pa   missing private public pa
            (Action::Pull,          [Some(Login), Some(Login), None, None],     [Some(Hidden), Some(Hidden), None, None],           [Some(Hidden), None, None, None]),
            (Action::Push,          [Some(Login), Some(Login), Some(Denied), Some(Denied)], [Some(Hidden), Some(Denied), Some(Denied), Some(Denied)], [Some(Hidden), None, None, None]),
            (Action::ReadInfo,      [Some(Hidden), Some(Hidden), None, None],   [Some(Hidden), None, None, None],                   [Some(Hidden), None, None, None]),
            (Action::Create,        [Some(Denied); 4],                           [Some(Denied); 4],                                  [None; 4]),
            (Action::Configure,     [Some(Hidden), Some(Hidden), Some(Denied), Some(Denied)], [Some(Hidden), Some(Denied), Some(Denied), Some(Denied)], [Some(Hidden), None, None, None]),
            (Action::ConfigureRetention, [Some(Hidden), Some(Hidden), Some(Denied), Some(Denied)], [Some(Hidden), Some(Denied), Some(Denied), Some(Denied)], [Some(Hidden), None, None, None]),
            (Action::ManagePins,         [Some(Hidden), Some(Hidden), Some(Denied), Some(Denied)], [Some(Hidden), Some(Denied), Some(Denied), Some(Denied)], [Some(Hidden), None, None, None]),
            (Action::ConfigureShortRetention, [Some(Hidden), Some(Hidden), Some(Denied), Some(Denied)], [Some(Hidden), Some(Denied), Some(Denied), Some(Denied)], [Some(Hidden), None, None, None]),
            (Action::ManagePublishers, [Some(Hidden), Some(Hidden), Some(Denied), Some(Denied)], [Some(Hidden), Some(Denied), Some(Denied), Some(Denied)], [Some(Hidden), None, None, None]),
            (Action::Destroy,       [Some(Hidden), Some(Hidden), Some(Denied), Some(Denied)], [Some(Hidden), Some(Denied), Some(Denied), Some(Denied)], [Some(Hidden), None, None, None]),
            (Action::DeletePath,    [Some(Login), Some(Login), Some(Denied), Some(Denied)], [Some(Hidden), Some(Hidden), Some(Denied), Some(Denied)], [Some(Hidden), None, None, None]),
            (Action::Audit,         [Some(Hidden), Some(Hidden), Some(Denied), None], [Some(Hidden), Some(Denied), Some(Denied), None], [Some(Hidden), None, None, None]),
            (Action::Revoke,        [Some(Hidden), Some(Hidden), Some(Denied), Some(Denied)], [Some(Hidden), Some(Denied), Some(Denied), Some(Denied)], [Some(Hidden), None, None, None]),
        ];
        assert_eq!(table.len(), Action::ALL.len(), "every action has a row");
        let caches = [MISSING, PRIVATE, PUBLIC, PUBLIC_AUDITED];
        for (action, anon, other, granted) in table {
            // "A token without it": the permissions that do not grant this
            // action (here: a push-only token, or pull-only for push).
            let other_caller = if *action == Action::Push {
                with(|p| p.pull = true)
            } else {
                with(|p| p.push = true)
            };
            for (i, cache) in caches.iter().enumerate() {
                assert_eq!(
                    code(decide(*action, *cache, anonymous())),
                    anon[i],
                    "{action:?} anonymous on {cache:?}"
                );
                assert_eq!(
                    code(decide(*action, *cache, other_caller)),
                    other[i],
                    "{action:?} other token on {cache:?}"
                );
                assert_eq!(
                    code(decide(*action, *cache, only(*action))),
                    granted[i],
                    "{action:?} granted on {cache:?}"
                );
            }
        }
    }

    /// A caller who cannot see a cache learns nothing: the decision for a
    /// hidden cache equals the one for a missing cache, for every action
    /// and every single permission bit that does not make it visible.
    #[test]
    fn hidden_and_missing_are_indistinguishable() {
        for action in Action::ALL {
            for caller in [anonymous(), with(|_| {})] {
                let hidden = decide(action, PRIVATE, caller);
                if action != Action::Create {
                    assert_eq!(
                        hidden,
                        decide(action, MISSING, caller),
                        "{action:?} {caller:?}"
                    );
                }
                if let Decision::Refuse(r) = hidden {
                    assert_eq!(r.disclosure, Disclosure::Nothing, "{action:?}");
                }
            }
        }
    }

    /// Retention alone cannot empty a cache: a short retention needs delete.
    #[test]
    fn retention_alone_does_not_stretch_into_deletion() {
        let retention_only = with(|p| p.configure_cache_retention = true);
        assert_eq!(
            decide(Action::ConfigureRetention, PRIVATE, retention_only),
            Decision::Allow
        );
        assert_eq!(
            code(decide(
                Action::ConfigureShortRetention,
                PRIVATE,
                retention_only
            )),
            Some(Denied)
        );
        let delete_only = with(|p| p.delete = true);
        assert_eq!(
            code(decide(
                Action::ConfigureShortRetention,
                PRIVATE,
                delete_only
            )),
            Some(Denied)
        );
    }

    #[test]
    fn a_session_never_grants_more_than_its_credential() {
        let push_only = Permission {
            push: true,
            ..Permission::default()
        };
        let all = Permission::all();
        #[rustfmt::skip]
        let table = [
            (SessionCredential::AccessToken(push_only), false),
            (SessionCredential::AccessToken(all), true),
            (SessionCredential::Publisher { grants_pull: false }, false),
            (SessionCredential::Publisher { grants_pull: true }, true),
        ];
        for (credential, pull) in table {
            let p = session_permission(credential);
            assert!(p.push, "{credential:?}");
            assert_eq!(p.pull, pull, "{credential:?}");
            // Nothing but pull and push, whatever the credential held.
            assert_eq!(
                Permission {
                    pull: false,
                    push: false,
                    ..p
                },
                Permission::default(),
                "{credential:?}"
            );
        }
    }

    #[test]
    fn denials_name_the_flag_and_hidden_refusals_do_not_confirm_existence() {
        let Decision::Refuse(r) = decide(Action::Push, PRIVATE, with(|p| p.pull = true)) else {
            panic!("pull-only token pushed");
        };
        assert_eq!(
            r.message(Action::Push, "priv", "alice"),
            "your token (alice) may not push to cache \"priv\" (needs --push)"
        );
        let Decision::Refuse(r) = decide(Action::Configure, MISSING, with(|p| p.push = true))
        else {
            panic!("configured a missing cache");
        };
        assert_eq!(
            r.message(Action::Configure, "priv", "alice"),
            "cache \"priv\" does not exist or your token has no access to it"
        );
    }

    /// A refused token (expired, forged, its session revoked) still pulls
    /// from a public cache, as no token would; everything else answers the
    /// token's refusal, the same on a private cache and a missing one.
    #[test]
    fn a_refused_token_pulls_public_caches_only() {
        let stale = CallerFacts {
            refused_credential: Some(ErrorCode::Expired),
            ..CallerFacts::default()
        };
        for action in Action::ALL {
            for cache in [MISSING, PRIVATE, PUBLIC, PUBLIC_AUDITED] {
                let want = if action == Action::Pull && cache.is_public {
                    None
                } else {
                    Some(ErrorCode::Expired)
                };
                assert_eq!(
                    code(decide(action, cache, stale)),
                    want,
                    "{action:?} on {cache:?}"
                );
                if let Decision::Refuse(r) = decide(action, cache, stale) {
                    assert_eq!(r.disclosure, Disclosure::Nothing, "{action:?} on {cache:?}");
                }
            }
        }
    }
}
