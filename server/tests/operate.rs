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

/// The value of the sample `name{labels}` in a scrape (0 when absent).
fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape_from(h: &Harness, peer: &str, header: Option<(&str, &str)>) -> harness::Answer {
    let mut req = Request::builder().uri("/metrics");
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let mut req = req.body(Body::empty()).unwrap();
    let peer: std::net::SocketAddr = peer.parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    h.send(req).await
}

/// Issue 21: `/metrics` in Prometheus's text format, every family there,
/// and the counts moving with what the server does; only loopback peers
/// (the default) read it, and never through a proxy.
#[tokio::test]
async fn metrics_count_what_happens_and_answer_only_allowed_peers() {
    use provenix_provenance::nar::{write, Node};
    let h = Harness::new().await;
    h.create_cache("main", true).await;
    let before = scrape_from(&h, "127.0.0.1:40000", None).await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text);
    // Families whose series are known up front are there from the start;
    // the per-route ones once a request was answered (the cache creation).
    for family in [
        "provenix_http_requests",
        "provenix_http_request_duration_seconds",
        "provenix_http_received_bytes",
        "provenix_http_sent_bytes",
        "provenix_uploads",
        "provenix_upload_nar_bytes",
        "provenix_keys_issued",
        "provenix_revocations",
        "provenix_revoked_paths",
        "provenix_gc_runs",
        "provenix_gc_duration_seconds",
        "provenix_gc_reclaimed_bytes",
        "provenix_gc_expired_paths",
        "provenix_gc_evicted_paths",
        "provenix_log_integrated_entries",
        "provenix_log_integration_failures",
        "provenix_internal_errors",
        "provenix_db_pool_connections",
    ] {
        assert!(
            before.text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{}",
            before.text
        );
    }

    // An upload, a refused upload, a narinfo, a revocation, a GC pass.
    let key = h.exchange(&h.root, "main").await;
    let nar = write(&Node::Regular {
        executable: false,
        contents: b"counted".to_vec(),
    });
    let hash = "0123456789abcdfghijklmnpqrsvwxyz";
    let mut info = harness::statement("main", &format!("/nix/store/{hash}-counted"), &nar, None);
    key.sign(&mut info);
    assert_eq!(
        h.upload(&key.session, &info, nar.clone()).await.status,
        StatusCode::OK
    );
    let unsigned = harness::statement("main", &format!("/nix/store/{hash}-counted"), &nar, None);
    h.upload(&key.session, &unsigned, nar.clone())
        .await
        .assert_refused(401, "unsigned-upload");
    // The CA, the key and the upload, integrated into the cache's log.
    provenix_server::maintenance::integrate::integrate_all(&h.state)
        .await
        .unwrap();
    let narinfo = h.get(&format!("/main/{hash}.narinfo"), None).await;
    assert_eq!(narinfo.status, StatusCode::OK);
    // GC before the revocation, while the upload's NAR is held.
    provenix_server::maintenance::gc::run_once(&h.state)
        .await
        .unwrap();
    let revoked = h
        .call(
            Method::POST,
            "/_api/v1/revoke",
            Some(&h.root),
            Some(serde_json::json!({ "cache": "main", "key": key.key_id, "reason": "counted" })),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);

    let after = scrape_from(&h, "[::1]:40000", None).await;
    assert_eq!(after.status, StatusCode::OK);
    assert!(
        after.text.contains("# TYPE provenix_refusals counter"),
        "{}",
        after.text
    );
    let moved = |series: &str| sample(&after.text, series) - sample(&before.text, series);
    assert_eq!(moved(r#"provenix_uploads_total{outcome="uploaded"}"#), 1.0);
    assert_eq!(moved("provenix_upload_nar_bytes_total"), nar.len() as f64);
    // Storage totals come from GC passes, not from uploads (per upload they
    // would say whether another cache held the content).
    assert!(sample(&after.text, r#"provenix_storage_bytes{kind="nar"}"#) > 0.0);
    assert!(sample(&after.text, r#"provenix_storage_bytes{kind="stored"}"#) > 0.0);
    assert_eq!(moved(r#"provenix_keys_issued_total{kind="token"}"#), 1.0);
    assert_eq!(
        moved(r#"provenix_refusals_total{route="upload",code="unsigned-upload"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"provenix_http_requests_total{route="narinfo",status="200"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"provenix_http_requests_total{route="upload",status="401"}"#),
        1.0
    );
    assert!(moved(r#"provenix_http_request_duration_seconds_count{route="narinfo"}"#) >= 1.0);
    assert_eq!(moved("provenix_revocations_total"), 1.0);
    assert_eq!(moved("provenix_revoked_paths_total"), 1.0);
    assert_eq!(moved("provenix_gc_runs_total"), 1.0);
    assert_eq!(moved("provenix_log_integrated_entries_total"), 3.0);
    assert_eq!(moved("provenix_log_integration_failures_total"), 0.0);
    assert!(after
        .text
        .contains(r#"provenix_db_pool_connections{state="idle"}"#));

    // Another method answers as it does on a missing endpoint.
    let post = |uri: &str| {
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        h.send(req)
    };
    let (posted, missing_post) = (post("/metrics").await, post("/no-such/endpoint/here").await);
    assert_eq!(posted.status, missing_post.status);
    assert_eq!(posted.json, missing_post.json);

    // Anyone else gets what a missing endpoint answers.
    let missing = h.get("/no-such-endpoint/at-all/here", None).await;
    for refused in [
        scrape_from(&h, "192.0.2.7:40000", None).await,
        scrape_from(&h, "10.0.0.1:40000", None).await,
        scrape_from(
            &h,
            "127.0.0.1:40000",
            Some(("x-forwarded-for", "192.0.2.7")),
        )
        .await,
        h.get("/metrics", None).await,
    ] {
        assert_eq!(refused.status, missing.status, "{}", refused.text);
        assert_eq!(refused.json, missing.json);
    }
}

/// `[metrics] allow` opens it to a scraper's network, and only to it.
#[tokio::test]
async fn metrics_allow_names_the_scrapers_network() {
    let h = Harness::with_config(|c| {
        c.metrics.allow = vec!["10.1.0.0/16".parse().unwrap()];
    })
    .await;
    assert_eq!(
        scrape_from(&h, "10.1.2.3:9", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        scrape_from(&h, "127.0.0.1:9", None).await.status,
        StatusCode::NOT_FOUND
    );
    // In a full configuration: a bad entry is refused naming itself; an
    // IPv4-mapped entry admits the IPv4 peer it names.
    let dir = tempfile::tempdir().unwrap();
    let with = |allow: &str| {
        provenix_server::config::Config::parse(&format!(
            "{}\n[metrics]\nallow = {allow}\n",
            provenix_server::config::default_config_text(dir.path())
        ))
    };
    let err = with(r#"["not an address"]"#).unwrap_err().to_string();
    assert!(err.contains("not an address"), "{err}");
    let mapped = with(r#"["::ffff:10.1.2.3"]"#)
        .expect("parses")
        .metrics
        .allow;
    let h = Harness::with_config(|c| c.metrics.allow = mapped).await;
    assert_eq!(
        scrape_from(&h, "10.1.2.3:9", None).await.status,
        StatusCode::OK
    );
}
