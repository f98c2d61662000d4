//! Fast tier: every endpoint that acts on a cache asks the one access
//! decision. Each is called in-process by every kind of caller on a
//! missing, a private and a public cache, and must answer what
//! `provenix_policy::decide` says for its action: the decision's rules are
//! tested in `policy/src/access.rs`, the wiring of every handler here.

mod harness;

use axum::http::{Method, StatusCode};
use harness::{perm, Answer, Harness};
use provenix_policy::{decide, Action, CacheFacts, CallerFacts, Decision, Permission};
use provenix_provenance::ErrorCode;
use serde_json::{json, Value};

/// A valid store-path hash part no cache holds.
const HASH: &str = "0123456789abcdfghijklmnpqrsvwxyz";

struct Endpoint {
    action: Action,
    method: Method,
    uri: &'static str,
    body: Option<fn(&str) -> Value>,
}

fn endpoints() -> Vec<Endpoint> {
    let e = |action, method, uri, body| Endpoint {
        action,
        method,
        uri,
        body,
    };
    vec![
        e(Action::Pull, Method::GET, "/{c}/nix-cache-info", None),
        e(Action::Pull, Method::GET, "/{c}/{h}.narinfo", None),
        e(Action::Pull, Method::GET, "/{c}/nar/{h}.nar.zst", None),
        e(Action::Pull, Method::GET, "/{c}/tlog/checkpoint", None),
        e(
            Action::Pull,
            Method::GET,
            "/.well-known/provenix/tlog/{c}",
            None,
        ),
        e(Action::Pull, Method::GET, "/{c}/tlog/tile/0/000.p/1", None),
        e(
            Action::Pull,
            Method::GET,
            "/{c}/tlog/tile/entries/000.p/1",
            None,
        ),
        e(
            Action::Pull,
            Method::GET,
            "/_api/v1/cache/{c}/revoked-paths",
            None,
        ),
        e(
            Action::ReadInfo,
            Method::GET,
            "/_api/v1/cache-config/{c}",
            None,
        ),
        e(
            Action::Configure,
            Method::PATCH,
            "/_api/v1/cache-config/{c}",
            Some(|_| json!({ "priority": 42 })),
        ),
        e(
            Action::ConfigureRetention,
            Method::PATCH,
            "/_api/v1/cache-config/{c}",
            Some(|_| json!({ "retention_period": 86400 })),
        ),
        e(
            Action::ConfigureShortRetention,
            Method::PATCH,
            "/_api/v1/cache-config/{c}",
            Some(|_| json!({ "retention_period": 60 })),
        ),
        e(
            Action::ConfigureRetention,
            Method::PATCH,
            "/_api/v1/cache-config/{c}",
            Some(|_| json!({ "max_stored_size": 1 << 30 })),
        ),
        e(
            Action::ReadInfo,
            Method::GET,
            "/_api/v1/cache-config/{c}/pins",
            None,
        ),
        e(
            Action::ManagePins,
            Method::PUT,
            "/_api/v1/cache-config/{c}/pins/system",
            Some(|_| json!({ "store_path": format!("/nix/store/{HASH}-system") })),
        ),
        e(
            Action::ManagePins,
            Method::DELETE,
            "/_api/v1/cache-config/{c}/pins/system",
            None,
        ),
        e(
            Action::Audit,
            Method::GET,
            "/_api/v1/cache/{c}/pin-changes",
            None,
        ),
        e(
            Action::ManagePublishers,
            Method::GET,
            "/_api/v1/cache-config/{c}/publishers",
            None,
        ),
        e(
            Action::DeletePath,
            Method::DELETE,
            "/_api/v1/cache/{c}/paths/{h}",
            None,
        ),
        e(
            Action::Audit,
            Method::GET,
            "/_api/v1/cache/{c}/uploads",
            None,
        ),
        e(Action::Audit, Method::GET, "/_api/v1/cache/{c}/keys", None),
        e(
            Action::Audit,
            Method::GET,
            "/_api/v1/cache/{c}/divergences",
            None,
        ),
        e(
            Action::Audit,
            Method::GET,
            "/_api/v1/cache/{c}/provenance/{h}",
            None,
        ),
        e(
            Action::Push,
            Method::POST,
            "/_api/v1/get-missing-paths",
            Some(|c| json!({ "cache": c, "store_path_hashes": [HASH] })),
        ),
        // Destroy last: a caller allowed to destroy would remove the cache.
        e(
            Action::Destroy,
            Method::DELETE,
            "/_api/v1/cache-config/{c}",
            None,
        ),
    ]
}

async fn call(h: &Harness, e: &Endpoint, cache: &str, token: Option<&str>) -> Answer {
    let uri = e.uri.replace("{c}", cache).replace("{h}", HASH);
    h.call(e.method.clone(), &uri, token, e.body.map(|b| b(cache)))
        .await
}

/// The callers: anonymous, and tokens holding one permission bit each on
/// every cache (`*`), nothing at all, or everything.
fn callers() -> Vec<(&'static str, Option<Permission>)> {
    vec![
        ("anonymous", None),
        ("nothing", Some(Permission::default())),
        ("pull", Some(perm(|p| p.pull = true))),
        ("push", Some(perm(|p| p.push = true))),
        ("delete", Some(perm(|p| p.delete = true))),
        ("configure", Some(perm(|p| p.configure_cache = true))),
        (
            "retention",
            Some(perm(|p| p.configure_cache_retention = true)),
        ),
        ("audit", Some(perm(|p| p.audit = true))),
        ("revoke", Some(perm(|p| p.revoke = true))),
        (
            "pull+delete",
            Some(perm(|p| {
                p.pull = true;
                p.delete = true
            })),
        ),
    ]
}

const ACCESS_CODES: [ErrorCode; 3] = [
    ErrorCode::Unauthorized,
    ErrorCode::PermissionDenied,
    ErrorCode::NoSuchCache,
];

#[tokio::test]
async fn every_endpoint_answers_as_the_access_decision_says() {
    let h = Harness::new().await;
    let mut checked = 0;
    for (who, permission) in callers() {
        let token = permission.map(|p| h.token(who, "*", p));
        for (cache, public) in [
            ("missing", None),
            ("priv", Some(false)),
            ("pub", Some(true)),
        ] {
            for e in endpoints() {
                // A fresh cache per check: a granted destroy or configure
                // must not change what the next check sees.
                if let Some(public) = public {
                    h.create_cache(cache, public).await;
                }
                let facts = CacheFacts {
                    exists: public.is_some(),
                    is_public: public == Some(true),
                    public_audit: false,
                };
                let caller = CallerFacts {
                    authenticated: token.is_some(),
                    refused_credential: None,
                    permission: permission.unwrap_or_default(),
                };
                let a = call(&h, &e, cache, token.as_deref()).await;
                let what = format!("{:?} {} {} by {who}: {}", e.action, e.method, e.uri, a.text);
                match decide(e.action, facts, caller) {
                    Decision::Allow => {
                        let code = ErrorCode::from_wire(a.code());
                        assert!(
                            a.status.is_success() || !ACCESS_CODES.contains(&code),
                            "allowed, but refused: {what}"
                        );
                    }
                    Decision::Refuse(r) => {
                        a.assert_refused(r.code.http_status(), r.code.as_str());
                        assert_eq!(
                            a.www_authenticate,
                            a.status == StatusCode::UNAUTHORIZED,
                            "{what}"
                        );
                    }
                }
                checked += 1;
                if public.is_some() {
                    let gone = h
                        .call(
                            Method::DELETE,
                            &format!("/_api/v1/cache-config/{cache}"),
                            Some(&h.root),
                            None,
                        )
                        .await;
                    assert!(
                        gone.status.is_success() || gone.status == StatusCode::NOT_FOUND,
                        "{}",
                        gone.text
                    );
                }
            }
        }
    }
    assert_eq!(checked, callers().len() * 3 * endpoints().len());
}

/// Whoever cannot see a private cache gets, from every endpoint, exactly
/// the answer a missing cache gets (the name aside).
#[tokio::test]
async fn a_hidden_cache_is_indistinguishable_from_a_missing_one() {
    let h = Harness::new().await;
    h.create_cache("secret-a", false).await;
    let elsewhere = h.token("mallory", "other-*", Permission::all());
    let nothing = h.token("nobody", "secret-*", Permission::default());
    for token in [None, Some(elsewhere.as_str()), Some(nothing.as_str())] {
        for e in endpoints() {
            let hidden = call(&h, &e, "secret-a", token).await;
            let missing = call(&h, &e, "secret-b", token).await;
            assert!(
                matches!(hidden.status.as_u16(), 401 | 404),
                "{} {}: {}",
                e.method,
                e.uri,
                hidden.text
            );
            assert_eq!(
                hidden.text.replace("secret-a", "NAME"),
                missing.text.replace("secret-b", "NAME"),
                "{} {}",
                e.method,
                e.uri
            );
            assert_eq!(hidden.status, missing.status, "{} {}", e.method, e.uri);
        }
    }
}

#[tokio::test]
async fn creating_needs_create_cache_and_says_nothing_of_taken_names() {
    let h = Harness::new().await;
    h.create_cache("taken", false).await;
    let pusher = h.token("p", "*", perm(|p| p.push = true));
    for name in ["taken", "free"] {
        let a = h
            .call(
                Method::POST,
                &format!("/_api/v1/cache-config/{name}"),
                Some(&pusher),
                Some(json!({})),
            )
            .await;
        a.assert_refused(403, "permission-denied");
    }
    let creator = h.token("c", "*", perm(|p| p.create_cache = true));
    let a = h
        .call(
            Method::POST,
            "/_api/v1/cache-config/taken",
            Some(&creator),
            Some(json!({})),
        )
        .await;
    a.assert_refused(409, "cache-exists");
}

#[tokio::test]
async fn revocation_is_refused_without_the_revoke_permission() {
    let h = Harness::new().await;
    h.create_cache("main", false).await;
    let body = json!({ "cache": "main", "reason": "r" });
    let a = h
        .call(Method::POST, "/_api/v1/revoke", None, Some(body.clone()))
        .await;
    a.assert_refused(401, "unauthorized");
    let auditor = h.token("a", "*", perm(|p| p.audit = true));
    let a = h
        .call(
            Method::POST,
            "/_api/v1/revoke",
            Some(&auditor),
            Some(body.clone()),
        )
        .await;
    a.assert_refused(403, "permission-denied");
    let revoker = h.token("r", "main", perm(|p| p.revoke = true));
    let a = h
        .call(
            Method::POST,
            "/_api/v1/revoke",
            Some(&revoker),
            Some(json!({ "cache": "main", "reason": "r", "dry_run": true })),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
}

/// The cache listing goes through the same decision: each caller sees a
/// cache exactly when `provenix_policy::access::listing` shows it, with
/// the rights it says, and a private cache it has no right on is absent.
#[tokio::test]
async fn the_cache_listing_shows_what_the_access_decision_does() {
    let h = Harness::new().await;
    h.create_cache("priv", false).await;
    h.create_cache("pub", true).await;
    for (who, permission) in callers() {
        let token = permission.map(|p| h.token(who, "*", p));
        let a = h
            .call(Method::GET, "/_api/v1/caches", token.as_deref(), None)
            .await;
        assert_eq!(a.status, StatusCode::OK, "{who}: {}", a.text);
        let caller = CallerFacts {
            authenticated: token.is_some(),
            refused_credential: None,
            permission: permission.unwrap_or_default(),
        };
        let mut want = Vec::new();
        for (name, is_public) in [("priv", false), ("pub", true)] {
            let facts = CacheFacts {
                exists: true,
                is_public,
                public_audit: false,
            };
            if let Some(rights) = provenix_policy::access::listing(facts, caller) {
                let rights: Vec<&str> = rights.iter().map(|r| r.name()).collect();
                want.push(json!({"name": name, "is_public": is_public, "rights": rights}));
            }
        }
        assert_eq!(a.json, Value::Array(want), "{who}");
    }
    // A refused token is refused, not listed as anonymous.
    h.call(Method::GET, "/_api/v1/caches", Some("not-a-token"), None)
        .await
        .assert_refused(401, "invalid-token");
}
