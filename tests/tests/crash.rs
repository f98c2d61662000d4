//! Crash safety: `kill -9` of the server and a client vanishing in the
//! middle of an upload leave nothing visible and no NAR pointing at missing
//! chunks; what completed before is served after a restart, and GC reclaims
//! what the interrupted uploads stored. Concurrent
//! uploads of one NAR to one and to two caches are all kept, stored once.

use futures::SinkExt;
use provenix_provenance::upload::UPLOAD_HEADER;
use provenix_tests::http::{sample_nar, upload_info, Http, UploadKey};
use provenix_tests::{backend_tests, random_bytes, Backend, ObjectStorage, TestServer};
use serde_json::Value;
use std::time::Duration;

/// Half of it (what a stalled upload sends) fills more than one pack.
fn big_nar(seed: u64) -> Vec<u8> {
    sample_nar(random_bytes(seed, 12 * 1024 * 1024))
}

/// `name` picks the hash part too: distinct names are distinct paths.
fn info(cache: &str, name: &str, nar: &[u8]) -> Value {
    let hash = if name == "crashed" {
        CRASHED_HASH
    } else {
        HASH
    };
    info_at(cache, hash, name, nar)
}

fn info_at(cache: &str, hash: &str, name: &str, nar: &[u8]) -> Value {
    upload_info(cache, &format!("/nix/store/{hash}-{name}"), nar)
}

const HASH: &str = "7rjj86a15146cq1d3qy068lml7n8ykzm";
const CRASHED_HASH: &str = "8rjj86a15146cq1d3qy068lml7n8ykzm";

/// Starts an upload that sends half the NAR and then stalls; returns the
/// request task and the sender (dropping it would end the body early).
async fn stalled_upload(
    url: &str,
    key: &UploadKey,
    info: &Value,
    nar: &[u8],
) -> (
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
    futures::channel::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
) {
    let (mut tx, rx) = futures::channel::mpsc::channel(4);
    let req = reqwest::Client::new()
        .put(format!("{url}/_api/v1/upload-path"))
        .header(UPLOAD_HEADER, key.sign(info).to_string())
        .body(reqwest::Body::wrap_stream(rx));
    let handle = tokio::spawn(req.send());
    tx.send(Ok(nar[..nar.len() / 2].to_vec())).await.unwrap();
    // Let the server chunk, compress and store what it got.
    tokio::time::sleep(Duration::from_millis(700)).await;
    (handle, tx)
}

/// Uploads are cut off after this, so GC sweeps unnamed objects after twice
/// as long: short here to see a killed upload's leftovers reclaimed.
const MAX_UPLOAD: Duration = Duration::from_secs(5);

backend_tests! {
    for _sqlite_local(Backend::Sqlite, ObjectStorage::Local),
        _postgres_s3(Backend::Postgres, ObjectStorage::S3);
    async fn kill_9_and_disconnects_mid_upload => crash_mid_upload;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_uploads_of_one_nar => concurrent_uploads;
    async fn concurrent_uploads_sharing_chunks => concurrent_uploads_sharing_chunks;
}

async fn crash_mid_upload(backend: Backend, storage: ObjectStorage) {
    let mut server = TestServer::start_on(backend, storage, "max-upload-duration = \"5s\"");
    let root = server.root_token.clone();
    server.client().ok(&["cache", "create", "main"]);
    let http = Http::new(&server.url);
    let key = http.key_for(&root, "main").await;
    let done = big_nar(1);
    let done_info = info("main", "done", &done);
    let a = http.signed_upload(&key, &done_info, &done).await;
    assert_eq!(a.0, 200, "{}", a.2);
    let objects_of_done = server.stored_objects();

    // kill -9 in the middle of the second upload.
    let nar = big_nar(2);
    let crashed = info("main", "crashed", &nar);
    let (handle, _tx) = stalled_upload(&server.url, &key, &crashed, &nar).await;
    let objects_mid_upload = server.stored_objects();
    server.kill9();
    match handle.await.unwrap() {
        Err(_) => {}
        Ok(r) => panic!(
            "the upload survived a kill -9: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ),
    }
    server.restart();
    let http = Http::new(&server.url);

    // Nothing of it is visible; what completed before is served.
    let crashed_path = crashed["store_path"].as_str().unwrap();
    let crashed_narinfo = format!("/main/{}.narinfo", &crashed_path[11..43]);
    let (status, _, _) = http.get(&crashed_narinfo, Some(&root)).await;
    assert_eq!(status, 404);
    let (status, _, text) = http
        .get(&format!("/main/{HASH}.narinfo"), Some(&root))
        .await;
    assert_eq!(status, 200, "{text}");
    // No NAR points at a missing chunk.
    let (ok, out, err) = server.run_mode("verify");
    assert!(ok, "{out}{err}");
    assert!(
        objects_mid_upload > objects_of_done,
        "the test did not catch the upload mid-way"
    );

    // A client that vanishes mid-stream: the same.
    let key = http.key_for(&root, "main").await;
    let (handle, tx) = stalled_upload(&server.url, &key, &crashed, &nar).await;
    handle.abort();
    drop(tx);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, _) = http.get(&crashed_narinfo, Some(&root)).await;
    assert_eq!(status, 404);
    let (ok, out, err) = server.run_mode("verify");
    assert!(ok, "{out}{err}");

    // Both left chunks behind that no row names. GC keeps them while an
    // upload could still be writing them, then reclaims every one: what
    // remains is exactly what the completed upload stored.
    let leftovers = server.stored_objects() - objects_of_done;
    assert!(leftovers > 0, "the interrupted uploads stored nothing");
    let report = gc_report(&server);
    assert_eq!(report["swept_objects"], 0, "swept too early: {report}");
    tokio::time::sleep(2 * MAX_UPLOAD + Duration::from_secs(1)).await;
    let report = gc_report(&server);
    assert_eq!(report["swept_objects"], leftovers as u64, "{report}");
    assert_eq!(server.stored_objects(), objects_of_done);
    let (ok, out, err) = server.run_mode("verify");
    assert!(ok, "{out}{err}");
    let (status, _, text) = http
        .get(&format!("/main/{HASH}.narinfo"), Some(&root))
        .await;
    assert_eq!(status, 200, "{text}");

    // The path uploads cleanly afterwards.
    let a = http.signed_upload(&key, &crashed, &nar).await;
    assert_eq!(a.0, 200, "{}", a.2);
    assert_eq!(a.1["outcome"], "uploaded");
}

fn gc_report(server: &TestServer) -> Value {
    let (ok, out, err) = server.run_mode("garbage-collector-once");
    assert!(ok, "{err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

async fn concurrent_uploads(backend: Backend, storage: ObjectStorage) {
    let server = TestServer::start_on(backend, storage, "");
    let root = server.root_token.clone();
    let admin = server.client();
    admin.ok(&["cache", "create", "a"]);
    admin.ok(&["cache", "create", "b"]);
    let http = Http::new(&server.url);
    let nar = big_nar(3);
    let mut keys = Vec::new();
    for cache in ["a", "a", "b", "b"] {
        keys.push((cache, http.key_for(&root, cache).await));
    }
    let uploads = keys.iter().map(|(cache, key)| {
        let http = &http;
        let body = key.sign(&info(cache, "same", &nar));
        let nar = nar.clone();
        async move { http.upload(None, &body, nar).await }
    });
    let answers = futures::future::join_all(uploads).await;
    for a in &answers {
        assert_eq!(a.0, 200, "{}", a.2);
    }
    // Every upload is on record, two per cache; both caches serve the path.
    for cache in ["a", "b"] {
        let (status, p, text) = http
            .get(
                &format!("/_api/v1/cache/{cache}/provenance/{HASH}"),
                Some(&root),
            )
            .await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(p["uploads"].as_array().unwrap().len(), 2, "{p}");
        let (status, _, _) = http
            .get(&format!("/{cache}/{HASH}.narinfo"), Some(&root))
            .await;
        assert_eq!(status, 200);
    }
    // One NAR, its chunks intact.
    let (ok, out, err) = server.run_mode("verify");
    assert!(ok, "{out}{err}");
}

/// Uploads of *different* new NARs made of the same chunks in different
/// orders, all at once: on PostgreSQL their commits upsert the same chunk
/// rows, which must not deadlock into a refusal.
async fn concurrent_uploads_sharing_chunks(backend: Backend, storage: ObjectStorage) {
    let server = TestServer::start_on(backend, storage, "");
    let root = server.root_token.clone();
    server.client().ok(&["cache", "create", "main"]);
    let http = Http::new(&server.url);
    let blocks: Vec<Vec<u8>> = (0..8).map(|i| random_bytes(100 + i, 512 * 1024)).collect();
    let mut uploads = Vec::new();
    for n in 0..6usize {
        // Each NAR: the blocks rotated and, for odd n, reversed.
        let mut order: Vec<usize> = (0..blocks.len()).map(|i| (i + n) % blocks.len()).collect();
        if n % 2 == 1 {
            order.reverse();
        }
        let contents: Vec<u8> = order.iter().flat_map(|&i| blocks[i].clone()).collect();
        let nar = sample_nar(contents);
        let hash = format!("{n}{}", &HASH[1..]);
        let key = http.key_for(&root, "main").await;
        uploads.push((hash, key, nar));
    }
    let answers = futures::future::join_all(uploads.iter().map(|(hash, key, nar)| {
        let http = &http;
        let body = key.sign(&info_at("main", hash, "shared", nar));
        async move { http.upload(None, &body, nar.clone()).await }
    }))
    .await;
    for a in &answers {
        assert_eq!(a.0, 200, "{}", a.2);
    }
    for (hash, _, nar) in &uploads {
        let (status, _, text) = http
            .get(&format!("/main/{hash}.narinfo"), Some(&root))
            .await;
        assert_eq!(status, 200, "{text}");
        let url = text
            .lines()
            .find_map(|l| l.strip_prefix("URL: "))
            .expect("URL line");
        assert!(text.contains("Compression: zstd"), "{text}");
        let served = http.get_bytes(&format!("/main/{url}"), Some(&root)).await;
        let bytes = zstd::decode_all(&served[..]).expect("a zstd stream");
        // Not assert_eq!: a mismatch would print megabytes.
        assert!(
            bytes == *nar,
            "the NAR served for {hash} differs from the one uploaded: {} vs {} bytes",
            bytes.len(),
            nar.len()
        );
    }
    let (ok, out, err) = server.run_mode("verify");
    assert!(ok, "{out}{err}");
}
