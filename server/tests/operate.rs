//! Fast tier: what operators' probes and logs rely on. `/health` answers
//! while the process serves; `/ready` only while the database and the
//! storage answer; every answer carries a request id.

mod harness;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use harness::Harness;

#[tokio::test]
async fn health_and_readiness_answer_without_a_token() {
    let h = Harness::new().await;
    let health = h.get("/health", None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text);
    assert_eq!(health.json["status"], "ok");
    let ready = h.get("/ready", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(ready.json["status"], "ready");

    // The storage directory gone (a lost mount): not ready, and the answer
    // names what failed without the server's paths.
    let storage = h.dir.path().join("storage");
    std::fs::remove_dir_all(&storage).unwrap();
    let ready = h.get("/ready", None).await;
    ready.assert_refused(503, "not-ready");
    assert!(ready.text.contains("storage"), "{}", ready.text);
    assert!(
        !ready.text.contains(&storage.display().to_string()),
        "{}",
        ready.text
    );
    // The process still serves.
    assert_eq!(h.get("/health", None).await.status, StatusCode::OK);
    std::fs::create_dir_all(&storage).unwrap();
    assert_eq!(h.get("/ready", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let h = Harness::new().await;
    let ids: Vec<String> = [
        h.get("/health", None).await,
        h.get("/nosuch/nix-cache-info", None).await,
        h.get("/_api/v1/whoami", Some("not-a-token")).await,
    ]
    .into_iter()
    .map(|a| a.request_id.expect("an X-Request-Id"))
    .collect();
    assert!(ids.iter().all(|id| id.len() == 16), "{ids:?}");
    assert_ne!(ids[0], ids[1]);
    // A proxy's id is kept when plain; anything else is replaced.
    let with_id = |id: &str| {
        Request::builder()
            .method(Method::GET)
            .uri("/health")
            .header("x-request-id", id)
            .body(Body::empty())
            .unwrap()
    };
    let kept = h.send(with_id("nginx-7f3a.01")).await;
    assert_eq!(kept.request_id.as_deref(), Some("nginx-7f3a.01"));
    let replaced = h.send(with_id("a b\" level=error")).await;
    assert_ne!(replaced.request_id.as_deref(), Some("a b\" level=error"));
    assert_eq!(replaced.request_id.map(|id| id.len()), Some(16));
}
