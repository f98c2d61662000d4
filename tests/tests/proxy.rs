//! Behind a reverse proxy that limits request bodies (issue 20): a real
//! nginx with NixOS's `client_max_body_size 10m` in front of one server on
//! SQLite + local disk, and of two replicas on PostgreSQL + S3. A 300 MB
//! NAR is pushed in parts the server announced, survives the server being
//! killed mid-upload (the client resumes from the parts the server holds),
//! and is pulled back whole by the real Nix client; without parts, nginx
//! refuses the same push.

use provenix_tests::nginx::{free_port, ReverseProxy};
use provenix_tests::server::spawn_server;
use provenix_tests::{host_of, random_bytes, Backend, Client, NixStore, ObjectStorage, TestServer};
use std::path::Path;
use std::time::{Duration, Instant};

const BIG: usize = 300 * 1024 * 1024;

/// Files under `dir`, recursively.
fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.flatten()
            .map(|e| {
                if e.path().is_dir() {
                    files_under(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

fn api_endpoint(port: u16) -> String {
    format!("api-endpoint = \"http://127.0.0.1:{port}/\"\n")
}

fn client_of(proxy: &ReverseProxy, server: &TestServer) -> Client {
    let c = Client::new();
    c.ok(&["login", "test", &proxy.url, &server.root_token]);
    c
}

/// Pulls `path` through the proxy with the real Nix client and checks it.
fn pull_back(proxy: &ReverseProxy, server: &TestServer, client: &Client, path: &str, blob: &[u8]) {
    let dst = NixStore::new();
    let (ok, err) = dst.copy_from(
        &format!("{}/main", proxy.url),
        path,
        &[&client.public_key("main")],
        Some((&host_of(&proxy.url), &server.root_token)),
    );
    assert!(ok, "nix copy through nginx failed: {err}");
    assert!(dst.read(path, "blob") == blob, "the pulled NAR differs");
}

/// Part PUTs nginx passed on, by upstream, and whether it refused any body.
fn parts_by_upstream(proxy: &ReverseProxy) -> (std::collections::BTreeMap<String, usize>, bool) {
    let log = proxy.access_log();
    let mut by = std::collections::BTreeMap::new();
    for line in log.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() >= 4 && f[0] == "PUT" && f[1].contains("/parts/") && f[2] == "200" {
            *by.entry(f[3].to_string()).or_default() += 1;
        }
    }
    (by, log.lines().any(|l| l.split(' ').nth(2) == Some("413")))
}

#[test]
fn a_300_mb_nar_goes_through_nginx_in_parts_and_resumes_after_the_server_is_killed() {
    let port = free_port();
    let mut server = TestServer::start_with(Backend::Sqlite, &api_endpoint(port));
    let proxy = ReverseProxy::start(port, &[&server.url], "10m");
    let client = client_of(&proxy, &server);
    client.ok(&["cache", "create", "main"]);
    let src = NixStore::new();
    let blob = random_bytes(300, BIG);
    let p = src.add_input_addressed("big", &[("blob", &blob)], &[]);

    let uploads = server.storage_dir().join("uploads");
    let (ok, _, err) = std::thread::scope(|s| {
        let push = s.spawn(|| client.run(&["push", "main", &p, "--store", &src.root()]));
        // Killed once a few parts are stored: the upload is well under way.
        let deadline = Instant::now() + Duration::from_secs(120);
        while files_under(&uploads) < 4 {
            assert!(Instant::now() < deadline, "no parts arrived");
            assert!(
                !push.is_finished(),
                "the push ended before parts were stored"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // Down long enough for the parts in flight and the next ones to
        // fail at nginx (502), not just to wait in its buffers.
        server.kill9();
        std::thread::sleep(Duration::from_secs(2));
        server.restart_on_same_port();
        push.join().unwrap()
    });
    assert!(ok, "the push failed: {err}");
    assert!(
        err.contains("Resuming the upload at part") || err.contains("Resumed the upload"),
        "the client did not resume: {err}"
    );
    let (by_upstream, refused) = parts_by_upstream(&proxy);
    assert!(!refused, "nginx refused a body: {}", proxy.access_log());
    // 300 MB in 8 MiB parts: 38. The two in flight when the server was
    // killed may be sent again (or found stored though their answer was
    // lost); starting over would send again the four or more stored.
    let sent: usize = by_upstream.values().sum();
    assert!((36..=40).contains(&sent), "{sent} parts: {by_upstream:?}");
    pull_back(&proxy, &server, &client, &p, &blob);
    // Stored as chunks, the parts are gone.
    assert_eq!(files_under(&uploads), 0);
}

#[test]
fn two_replicas_on_postgres_and_s3_take_the_parts_of_a_300_mb_nar() {
    let port = free_port();
    let server = TestServer::start_on(Backend::Postgres, ObjectStorage::S3, &api_endpoint(port));
    let (mut replica, replica_url) = spawn_server(
        &server.config_path,
        server.dir.path(),
        &["--mode", "api-server", "--listen", "127.0.0.1:0"],
    );
    let proxy = ReverseProxy::start(port, &[&server.url, &replica_url], "10m");
    let client = client_of(&proxy, &server);
    client.ok(&["cache", "create", "main"]);
    let src = NixStore::new();
    let blob = random_bytes(301, BIG);
    let p = src.add_input_addressed("big", &[("blob", &blob)], &[]);
    let (ok, _, err) = client.run(&["push", "main", &p, "--store", &src.root()]);
    let (by_upstream, refused) = parts_by_upstream(&proxy);
    pull_back(&proxy, &server, &client, &p, &blob);
    let _ = replica.kill();
    let _ = replica.wait();
    assert!(ok, "the push failed: {err}");
    assert!(!refused, "nginx refused a body: {}", proxy.access_log());
    assert_eq!(by_upstream.values().sum::<usize>(), 38, "{by_upstream:?}");
    assert_eq!(
        by_upstream.len(),
        2,
        "both replicas take parts: {by_upstream:?}"
    );
    let bucket = server.s3.as_ref().expect("S3").bucket_dir();
    assert_eq!(files_under(&bucket.join("uploads")), 0);
}

#[test]
fn without_parts_nginx_refuses_the_same_push() {
    let port = free_port();
    let extra = format!("{}max-request-body = 0\n", api_endpoint(port));
    let server = TestServer::start_with(Backend::Sqlite, &extra);
    let proxy = ReverseProxy::start(port, &[&server.url], "10m");
    let client = client_of(&proxy, &server);
    client.ok(&["cache", "create", "main"]);
    let src = NixStore::new();
    let p = src.add_input_addressed("big", &[("blob", &random_bytes(12, 12 << 20))], &[]);
    let err = client.fails(&["push", "main", &p, "--store", &src.root()]);
    assert!(err.contains("413"), "{err}");
}
