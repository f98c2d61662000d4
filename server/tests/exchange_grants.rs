//! Fast tier: an exchange never grants more than the credential it came
//! from. The session token handed out with an upload key may pull only if
//! the access token that paid for it could.

mod harness;

use axum::http::{Method, StatusCode};
use harness::{perm, Harness};
use serde_json::json;

/// A token of alice's with pull and push on `priv`.
fn reader_and_pusher(h: &Harness) -> String {
    h.token(
        "alice",
        "priv",
        perm(|p| {
            p.pull = true;
            p.push = true;
        }),
    )
}

#[tokio::test]
async fn a_push_only_token_buys_a_push_only_session() {
    let h = Harness::new().await;
    h.create_cache("priv", false).await;
    let push_only = h.token("builder", "priv", perm(|p| p.push = true));
    // The token itself cannot read the private cache...
    h.get("/priv/nix-cache-info", Some(&push_only))
        .await
        .assert_refused(404, "no-such-cache");
    // ...and neither can the session it buys (it could, before).
    let session = h.exchange(&push_only, "priv").await.session;
    h.get("/priv/nix-cache-info", Some(&session))
        .await
        .assert_refused(404, "no-such-cache");
    h.get(
        "/priv/0123456789abcdfghijklmnpqrsvwxyz.narinfo",
        Some(&session),
    )
    .await
    .assert_refused(404, "no-such-cache");
    let whoami = h.get("/_api/v1/whoami", Some(&session)).await;
    assert_eq!(
        whoami.json["caches"],
        json!({ "priv": { "w": true } }),
        "{}",
        whoami.text
    );
    // It pushes: asking what is missing works.
    let missing = h
        .call(
            Method::POST,
            "/_api/v1/get-missing-paths",
            Some(&session),
            Some(json!({ "cache": "priv", "store_path_hashes": [] })),
        )
        .await;
    assert_eq!(missing.status, StatusCode::OK, "{}", missing.text);
}

#[tokio::test]
async fn a_reader_who_pushes_keeps_reading_with_the_session() {
    let h = Harness::new().await;
    h.create_cache("priv", false).await;
    let both = h.token(
        "alice",
        "priv",
        perm(|p| {
            p.pull = true;
            p.push = true;
            p.destroy_cache = true;
        }),
    );
    let session = h.exchange(&both, "priv").await.session;
    assert_eq!(
        h.get("/priv/nix-cache-info", Some(&session)).await.status,
        StatusCode::OK
    );
    // Pull and push only, whatever else the token held.
    let whoami = h.get("/_api/v1/whoami", Some(&session)).await;
    assert_eq!(
        whoami.json["caches"],
        json!({ "priv": { "r": true, "w": true } }),
        "{}",
        whoami.text
    );
    h.call(
        Method::DELETE,
        "/_api/v1/cache-config/priv",
        Some(&session),
        None,
    )
    .await
    .assert_refused(403, "permission-denied");
}

/// Revoking an upload key ends the session token issued with it at once.
#[tokio::test]
async fn revoking_the_key_ends_its_session() {
    let h = Harness::new().await;
    h.create_cache("priv", false).await;
    let both = reader_and_pusher(&h);
    let session = h.exchange(&both, "priv").await.session;
    let whoami = h.get("/_api/v1/whoami", Some(&session)).await;
    let key = whoami.json["key_id"]
        .as_str()
        .expect("a session names its key")
        .to_string();
    assert_eq!(
        h.get("/priv/nix-cache-info", Some(&session)).await.status,
        StatusCode::OK
    );
    let revoked = h
        .call(
            Method::POST,
            "/_api/v1/revoke",
            Some(&h.root),
            Some(json!({ "key": key, "reason": "laptop stolen" })),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    for (method, uri, body) in [
        (Method::GET, "/priv/nix-cache-info", None),
        (
            Method::GET,
            "/priv/0123456789abcdfghijklmnpqrsvwxyz.narinfo",
            None,
        ),
        (
            Method::POST,
            "/_api/v1/get-missing-paths",
            Some(json!({ "cache": "priv", "store_path_hashes": [] })),
        ),
        (Method::GET, "/_api/v1/whoami", None),
    ] {
        let a = h.call(method, uri, Some(&session), body).await;
        a.assert_refused(401, "key-revoked");
    }
    // The access token that bought it is not revoked.
    assert_eq!(
        h.get("/priv/nix-cache-info", Some(&both)).await.status,
        StatusCode::OK
    );
}
