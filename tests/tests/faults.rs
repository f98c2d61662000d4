//! Faults of real deployments, injected (issue 21), all on loopback and
//! bounded in time:
//! - the S3 server failing (every request 503, connections reset,
//!   connections stalled past the timeouts) through a fault proxy in front
//!   of s3s-fs: uploads fail with `storage-unavailable` and leave nothing
//!   visible, pulls are refused with the same 503 before a byte of NAR
//!   (never a short 200);
//! - the local disk filling up (a small tmpfs);
//! - PostgreSQL stopped and started again (a cluster of the test's own);
//! - a replica killed with -9 under load while another serves.
//!
//! After each fault everything works again: the push succeeds, the real Nix
//! client pulls byte-exact, and `provenixd --mode verify` is clean.

use provenix_provenance::NarInfo;
use provenix_tests::fault_proxy::{Fault, FaultProxy};
use provenix_tests::s3::S3Server;
use provenix_tests::{host_of, random_bytes, Backend, NixStore, TestServer};

/// Short timeouts and one retry, so a stall fails in seconds, not minutes.
const IMPATIENT: &str =
    "request-timeout = \"1s\"\nconnect-timeout = \"1s\"\nmax-retries = 1\nretry-timeout = \"2s\"\n";

fn hash_of(store_path: &str) -> &str {
    &store_path["/nix/store/".len()..][..32]
}

#[tokio::test]
async fn s3_answering_503() {
    s3_fault(Fault::ServerError, 31).await;
}

#[tokio::test]
async fn s3_resetting_connections() {
    s3_fault(Fault::Reset, 41).await;
}

#[tokio::test]
async fn s3_stalling_past_the_timeouts() {
    s3_fault(Fault::Stall, 51).await;
}

async fn s3_fault(fault: Fault, seed: u64) {
    let s3 = S3Server::start();
    let proxy = FaultProxy::start(&s3.endpoint);
    let server = TestServer::start_on_s3_through(Backend::Sqlite, s3, &proxy.endpoint, IMPATIENT);
    let client = server.client();
    client.ok(&["cache", "create", "main"]);
    let key = client.public_key("main");
    let src = NixStore::new();
    let blob = |n: u64| random_bytes(seed + n, 700_000);
    let before = src.add_input_addressed("before", &[("blob", &blob(0))], &[]);
    let during = src.add_input_addressed("during", &[("blob", &blob(1))], &[]);
    client.ok(&["push", "main", &before, "--store", &src.root()]);
    let http = provenix_tests::http::Http::new(&server.url);
    let (_, _, text) = http
        .get(
            &format!("/main/{}.narinfo", hash_of(&before)),
            Some(&server.root_token),
        )
        .await;
    let info = NarInfo::parse(&text).unwrap();

    proxy.set(fault);
    // An upload fails with a code the pusher can act on, and nothing of it
    // becomes visible.
    let err = client.fails(&["push", "main", &during, "--store", &src.root()]);
    assert!(err.contains("storage-unavailable"), "{fault:?}: {err}");
    let (status, _, _) = http
        .get(
            &format!("/main/{}.narinfo", hash_of(&during)),
            Some(&server.root_token),
        )
        .await;
    assert_eq!(status, 404, "{fault:?}: a failed upload is not visible");

    // A pull is refused before its head with a 503 Nix retries (the first
    // storage read comes first), never a 200 it could take for a whole NAR.
    let answer = http
        .get(&format!("/main/{}", info.url), Some(&server.root_token))
        .await;
    assert_eq!(answer.0, 503, "{fault:?}: {}", answer.2);
    assert!(answer.2.contains("storage-unavailable"), "{}", answer.2);
    let dst = NixStore::new();
    let netrc = Some((host_of(&server.url), server.root_token.clone()));
    let netrc = netrc.as_ref().map(|(h, t)| (h.as_str(), t.as_str()));

    // The fault ends: the same push succeeds, both paths substitute
    // byte-exact with the real Nix client, and every stored chunk verifies.
    proxy.set(Fault::None);
    client.ok(&["push", "main", &during, "--store", &src.root()]);
    for (path, n) in [(&before, 0), (&during, 1)] {
        let (ok, err) = dst.copy_from(&format!("{}/main", server.url), path, &[&key], netrc);
        assert!(ok, "{fault:?}: {err}");
        assert_eq!(dst.read(path, "blob"), blob(n));
    }
    assert!(server.verified_chunks() > 0);
}

/// A small tmpfs, unmounted when dropped (also when the test fails).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let (ok, _, err) = provenix_tests::run(std::process::Command::new("mount").args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            dir.path().to_str().unwrap(),
        ]));
        assert!(ok, "this test mounts a small tmpfs and needs root: {err}");
        SmallDisk { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The local disk filling up: an upload that does not fit fails with a
/// clear error and leaves no pack or path visible; once space is freed the
/// same push succeeds and pulls byte-exact.
#[tokio::test]
async fn the_local_disk_filling_up() {
    let disk = SmallDisk::new("4m");
    let storage = disk.path().join("storage");
    let server = TestServer::start_on_local_dir(Backend::Sqlite, &storage);
    let client = server.client();
    client.ok(&["cache", "create", "main"]);
    let key = client.public_key("main");
    let src = NixStore::new();
    let small = src.add_input_addressed("small", &[("blob", &random_bytes(61, 500_000))], &[]);
    let big = src.add_input_addressed("big", &[("blob", &random_bytes(62, 2_000_000))], &[]);
    client.ok(&["push", "main", &small, "--store", &src.root()]);
    // Leave about 1 MB free: the 2 MB path cannot fit.
    let filler = disk.path().join("filler");
    let free = {
        let (ok, out, _) = provenix_tests::run(
            std::process::Command::new("df")
                .args(["--output=avail", "-B1"])
                .arg(disk.path()),
        );
        assert!(ok);
        out.lines().nth(1).unwrap().trim().parse::<u64>().unwrap()
    };
    std::fs::write(&filler, vec![0u8; (free - 1_000_000) as usize]).unwrap();
    let packs_before = count_files(&storage);

    let err = client.fails(&["push", "main", &big, "--store", &src.root()]);
    assert!(err.contains("storage-unavailable"), "{err}");
    let http = provenix_tests::http::Http::new(&server.url);
    let (status, _, _) = http
        .get(
            &format!("/main/{}.narinfo", hash_of(&big)),
            Some(&server.root_token),
        )
        .await;
    assert_eq!(status, 404, "a failed upload is not visible");
    assert_eq!(
        count_files(&storage),
        packs_before,
        "no half-written pack is left in the store"
    );
    // What was there still serves.
    let dst = NixStore::new();
    let netrc = Some((host_of(&server.url), server.root_token.clone()));
    let netrc = netrc.as_ref().map(|(h, t)| (h.as_str(), t.as_str()));
    let (ok, err) = dst.copy_from(&format!("{}/main", server.url), &small, &[&key], netrc);
    assert!(ok, "{err}");

    std::fs::remove_file(&filler).unwrap();
    client.ok(&["push", "main", &big, "--store", &src.root()]);
    let (ok, err) = dst.copy_from(&format!("{}/main", server.url), &big, &[&key], netrc);
    assert!(ok, "{err}");
    assert_eq!(dst.read(&big, "blob"), random_bytes(62, 2_000_000));
    assert!(server.verified_chunks() > 0);
}

/// Regular files under `dir`, recursively.
fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// PostgreSQL stopped and started again, while idle and in the middle of a
/// push: while it is down every answer is a prompt 503
/// (`database-unavailable`; a narinfo is never a 404 Nix would remember),
/// nothing half-done becomes visible, and once it is back the server
/// reconnects by itself: the push succeeds and pulls byte-exact.
#[tokio::test]
async fn postgres_restarted_mid_push_and_mid_pull() {
    let pg = provenix_tests::postgres::OwnPostgres::start();
    let server = TestServer::start_on_database(&pg.url);
    let client = server.client();
    client.ok(&["cache", "create", "main"]);
    let key = client.public_key("main");
    let src = NixStore::new();
    let blob = |n: u64| random_bytes(70 + n, if n == 2 { 24_000_000 } else { 600_000 });
    let first = src.add_input_addressed("first", &[("blob", &blob(0))], &[]);
    let second = src.add_input_addressed("second", &[("blob", &blob(1))], &[]);
    let large = src.add_input_addressed("large", &[("blob", &blob(2))], &[]);
    client.ok(&["push", "main", &first, "--store", &src.root()]);
    let http = provenix_tests::http::Http::new(&server.url);
    let narinfo = |p: &str| format!("/main/{}.narinfo", hash_of(p));
    let token = server.root_token.clone();

    pg.stop();
    // Probes: the process serves, but is not ready.
    assert_eq!(http.get("/health", None).await.0, 200);
    let (status, _, text) = http.get("/ready", None).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("not-ready"), "{text}");
    let (status, _, text) = http.get(&narinfo(&first), Some(&token)).await;
    assert_eq!(status, 503, "a pull while the database is down: {text}");
    assert!(text.contains("database-unavailable"), "{text}");
    let err = client.fails(&["push", "main", &second, "--store", &src.root()]);
    assert!(err.contains("database-unavailable"), "{err}");
    pg.start_again();
    let (status, _, text) = http.get(&narinfo(&first), Some(&token)).await;
    assert_eq!(status, 200, "reconnected by itself: {text}");
    assert_eq!(http.get("/ready", None).await.0, 200);
    assert_eq!(http.get(&narinfo(&second), Some(&token)).await.0, 404);

    // Mid-push: the database goes away while a large NAR streams in.
    let push = {
        let (root, large) = (src.root(), large.clone());
        let client = server.client();
        std::thread::spawn(move || client.run(&["push", "main", &large, "--store", &root]))
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    pg.stop();
    std::thread::sleep(std::time::Duration::from_millis(500));
    pg.start_again();
    let (pushed, _, err) = push.join().unwrap();
    let (status, _, _) = http.get(&narinfo(&large), Some(&token)).await;
    if pushed {
        assert_eq!(status, 200);
    } else {
        assert!(
            err.contains("unavailable") || err.contains("retry"),
            "{err}"
        );
        assert_eq!(status, 404, "a push that failed left nothing visible");
        client.ok(&["push", "main", &large, "--store", &src.root()]);
    }
    client.ok(&["push", "main", &second, "--store", &src.root()]);
    let dst = NixStore::new();
    let netrc = Some((host_of(&server.url), token.clone()));
    let netrc = netrc.as_ref().map(|(h, t)| (h.as_str(), t.as_str()));
    for (p, n) in [(&first, 0), (&second, 1), (&large, 2)] {
        let (ok, err) = dst.copy_from(&format!("{}/main", server.url), p, &[&key], netrc);
        assert!(ok, "{err}");
        assert_eq!(dst.read(p, "blob"), blob(n));
    }
    assert!(server.verified_chunks() > 0);
}

/// Two replicas over PostgreSQL and S3; one is killed with -9 in the middle
/// of a push while pulls run against the other: the survivor answers every
/// request throughout, the interrupted push leaves nothing visible, and
/// pushing again through the survivor completes it.
#[tokio::test]
async fn a_replica_killed_under_load_while_another_serves() {
    let server = TestServer::start_on(Backend::Postgres, provenix_tests::ObjectStorage::S3, "");
    let (mut doomed, doomed_url) = provenix_tests::server::spawn_server(
        &server.config_path,
        server.dir.path(),
        &["--mode", "api-server", "--listen", "127.0.0.1:0"],
    );
    let client = server.client();
    client.ok(&["cache", "create", "main"]);
    let key = client.public_key("main");
    let src = NixStore::new();
    let served: Vec<String> = (0..4)
        .map(|n| {
            src.add_input_addressed(
                &format!("served{n}"),
                &[("blob", &random_bytes(80 + n, 300_000))],
                &[],
            )
        })
        .collect();
    let mut args = vec!["push", "main"];
    args.extend(served.iter().map(String::as_str));
    let root = src.root();
    args.extend(["--store", &root]);
    client.ok(&args);
    let large = src.add_input_addressed("large", &[("blob", &random_bytes(90, 24_000_000))], &[]);

    // Pullers on the survivor, counting every answer that is not a 200.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pullers: Vec<_> = (0..2)
        .map(|_| {
            let (url, token, paths, stop) = (
                server.url.clone(),
                server.root_token.clone(),
                served.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let http = provenix_tests::http::Http::new(&url);
                let (mut ok, mut failed) = (0u64, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    for p in &paths {
                        let (status, _, text) = http
                            .get(&format!("/main/{}.narinfo", hash_of(p)), Some(&token))
                            .await;
                        let Ok(info) = NarInfo::parse(&text) else {
                            failed.push(format!("narinfo {status}: {text}"));
                            continue;
                        };
                        let (status, _, _) =
                            http.get(&format!("/main/{}", info.url), Some(&token)).await;
                        if status == 200 {
                            ok += 1;
                        } else {
                            failed.push(format!("nar {status}"));
                        }
                    }
                }
                (ok, failed)
            })
        })
        .collect();

    // A push through the doomed replica, killed while it streams.
    let push = {
        let c = provenix_tests::Client::new();
        c.ok(&["login", "test", &doomed_url, &server.root_token]);
        let (root, large) = (src.root(), large.clone());
        std::thread::spawn(move || c.run(&["push", "main", &large, "--store", &root]))
    };
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let _ = doomed.kill();
    let _ = doomed.wait();
    let (pushed, _, err) = push.join().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut total = 0;
    for p in pullers {
        let (ok, failed) = p.await.unwrap();
        assert!(
            failed.is_empty(),
            "the survivor failed requests: {failed:?}"
        );
        total += ok;
    }
    assert!(total > 0, "the pullers ran");
    let http = provenix_tests::http::Http::new(&server.url);
    let (status, _, _) = http
        .get(
            &format!("/main/{}.narinfo", hash_of(&large)),
            Some(&server.root_token),
        )
        .await;
    if !pushed {
        assert_eq!(status, 404, "an interrupted push is not visible: {err}");
    }
    client.ok(&["push", "main", &large, "--store", &src.root()]);
    let dst = NixStore::new();
    let netrc = Some((host_of(&server.url), server.root_token.clone()));
    let netrc = netrc.as_ref().map(|(h, t)| (h.as_str(), t.as_str()));
    let (ok, err) = dst.copy_from(&format!("{}/main", server.url), &large, &[&key], netrc);
    assert!(ok, "{err}");
    assert_eq!(dst.read(&large, "blob"), random_bytes(90, 24_000_000));
    assert!(server.verified_chunks() > 0);
}
