//! One storage suite for both object backends: the local disk (with SQLite)
//! and a real S3-compatible server (s3s-fs, with PostgreSQL). Push and pull
//! with the real Nix client, cross-cache dedup, GC, a missing chunk, and
//! replicas sharing one database and one bucket.

use provenix_tests::{
    backend_tests, host_of, random_bytes, Backend, NixStore, ObjectStorage, TestServer,
};

// The local disk with SQLite, S3 with PostgreSQL.
backend_tests! {
    for _local_disk(Backend::Sqlite, ObjectStorage::Local),
        _s3(Backend::Postgres, ObjectStorage::S3);
    async fn storage_suite => storage_suite;
    fn gc_races_a_push => gc_races_a_push;
}

fn chunk_files(server: &TestServer) -> Vec<std::path::PathBuf> {
    fn walk(p: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), out);
                } else {
                    out.push(e.path());
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&server.storage_dir().join("chunks"), &mut out);
    out
}

async fn storage_suite(backend: Backend, storage: ObjectStorage) {
    let server = TestServer::start_on(backend, storage, "");
    let client = server.client();
    client.ok(&["cache", "create", "a"]);
    client.ok(&["cache", "create", "b"]);
    let src = NixStore::new();
    let big_data = random_bytes(11, 3 * 1024 * 1024);
    let big = src.add_input_addressed("big", &[("blob", &big_data)], &[]);
    let small = src.add_input_addressed("small", &[("bin/x", b"#!/bin/sh\n")], &[]);
    client.ok(&["push", "a", &big, &small, "--store", &src.root()]);
    let chunks = server.verified_chunks();
    assert!(chunks > 10, "a 3 MiB NAR is chunked: {chunks} chunks");
    // One pack per NAR here: each NAR's new chunks are stored together.
    let objects = server.stored_objects();
    assert_eq!(objects, 2, "{:?}", chunk_files(&server));

    // The real Nix client substitutes both, byte for byte.
    let netrc = (host_of(&server.url), server.root_token.clone());
    let key_a = client.public_key("a");
    let dst = NixStore::new();
    for p in [&big, &small] {
        let (ok, err) = dst.copy_from(
            &format!("{}/a", server.url),
            p,
            &[&key_a],
            Some((&netrc.0, &netrc.1)),
        );
        assert!(ok, "{p}: {err}");
    }
    assert_eq!(dst.read(&big, "blob"), big_data);

    // Another cache: recorded without storing a byte more.
    client.ok(&["push", "b", &big, &small, "--store", &src.root()]);
    assert_eq!(server.stored_objects(), objects);

    // A NAR sharing most chunks with big: only its few new chunks are
    // stored, in a pack of their own; the shared ones stay in big's pack.
    let bigger = src.add_input_addressed(
        "bigger",
        &[("blob", &big_data), ("extra", b"more bytes")],
        &[],
    );
    client.ok(&["push", "a", &bigger, "--store", &src.root()]);
    let new_chunks = server.verified_chunks() - chunks;
    assert!(
        (1..=3).contains(&new_chunks),
        "bigger reuses big's chunks: {new_chunks} new"
    );
    assert_eq!(server.stored_objects(), objects + 1);

    // GC: while b still holds big, nothing goes; once no cache does, its
    // own chunks go, but its pack stays while bigger uses chunks in it.
    client.ok(&["cache", "delete-path", "a", &big]);
    server.gc_without_grace();
    assert_eq!(server.stored_objects(), objects + 1);
    client.ok(&["cache", "delete-path", "b", &big]);
    // Chunk times are in seconds: let "unused since" be strictly in the past.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = server.gc_without_grace();
    assert!(out.contains("\"deleted_nars\":1"), "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let deleted = report["deleted_chunks"].as_u64().unwrap();
    assert!(deleted >= 1, "big's own chunks go: {out}");
    assert_eq!(server.stored_objects(), objects + 1, "{out}");
    assert_eq!(server.verified_chunks(), chunks + new_chunks - deleted);
    let dst = NixStore::new();
    let (ok, err) = dst.copy_from(
        &format!("{}/a", server.url),
        &bigger,
        &[&key_a],
        Some((&netrc.0, &netrc.1)),
    );
    assert!(ok, "{err}");
    assert_eq!(dst.read(&bigger, "blob"), big_data);
    // Once nothing uses big's pack, it goes with bigger's.
    client.ok(&["cache", "delete-path", "a", &bigger]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = server.gc_without_grace();
    assert!(out.contains("\"deleted_nars\":1"), "{out}");
    let left = chunk_files(&server);
    assert_eq!(left.len(), 1, "only small's chunk is left: {left:?}");
    let (ok, err) = NixStore::new().copy_from(
        &format!("{}/b", server.url),
        &small,
        &[&client.public_key("b")],
        Some((&netrc.0, &netrc.1)),
    );
    assert!(ok, "{err}");

    // `--mode verify` finds nothing wrong, then a corrupt chunk and the paths
    // it breaks, then a missing one.
    let (ok, out, err) = server.run_mode("verify");
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("\"checked_chunks\":1") && out.contains("\"missing\":[]"),
        "{out}"
    );
    std::fs::write(&left[0], b"not what was stored").unwrap();
    let (ok, out, err) = server.run_mode("verify");
    assert!(!ok, "verify passed a corrupt chunk: {out}");
    assert!(out.contains("\"corrupt\":[\"chunks/"), "{out}");
    assert!(
        out.contains(&format!("a: {small}")) && out.contains(&format!("b: {small}")),
        "{out}"
    );
    assert!(
        err.contains("1 damaged chunks in 0 missing and 1 corrupt objects; 2 paths affected"),
        "{err}"
    );
    std::fs::remove_file(&left[0]).unwrap();
    let (ok, out, _) = server.run_mode("verify");
    assert!(!ok && out.contains("\"missing\":[\"chunks/"), "{out}");

    // A missing chunk: the client gets an error, never a complete-looking 200.
    let narinfo = reqwest::Client::new()
        .get(format!("{}/a/{}.narinfo", server.url, &small[11..43]))
        .bearer_auth(&server.root_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let nar_url = narinfo
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .unwrap();
    // The server may fail before or after the headers; either way the
    // transfer must not complete as a 200.
    let resp = reqwest::Client::new()
        .get(format!("{}/a/{nar_url}", server.url))
        .bearer_auth(&server.root_token)
        .send()
        .await;
    let whole = match resp {
        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
        Err(_) => false,
    };
    assert!(
        !whole,
        "a NAR with a missing chunk was served as a complete 200"
    );
    let (ok, _) = NixStore::new().copy_from(
        &format!("{}/a", server.url),
        &small,
        &[&key_a],
        Some((&netrc.0, &netrc.1)),
    );
    assert!(!ok, "Nix accepted a NAR with a missing chunk");
}

/// Two `--mode api-server` processes over one PostgreSQL and one bucket: a
/// push through one is served by the other; GC runs as its own process.
#[test]
fn replicas_share_postgres_and_s3() {
    let server = TestServer::start_on(Backend::Postgres, ObjectStorage::S3, "");
    let (replica, replica_url) = provenix_tests::server::spawn_server(
        &server.config_path,
        server.dir.path(),
        &["--mode", "api-server", "--listen", "127.0.0.1:0"],
    );
    let mut replica = replica;
    let client = server.client();
    client.ok(&["cache", "create", "main"]);
    let src = NixStore::new();
    let data = random_bytes(5, 1024 * 1024);
    let p = src.add_input_addressed("replicated", &[("blob", &data)], &[]);
    client.ok(&["push", "main", &p, "--store", &src.root()]);
    let dst = NixStore::new();
    let (ok, err) = dst.copy_from(
        &format!("{replica_url}/main"),
        &p,
        &[&client.public_key("main")],
        Some((&host_of(&replica_url), &server.root_token)),
    );
    let gc = server.run_mode("garbage-collector-once");
    let _ = replica.kill();
    let _ = replica.wait();
    assert!(ok, "the replica did not serve the push: {err}");
    assert_eq!(dst.read(&p, "blob"), data);
    assert!(gc.0, "{}", gc.2);
}

/// Garbage collection running again and again while a push reuses the very
/// chunks it is reaping: no chunk a NAR refers to is ever deleted.
fn gc_races_a_push(backend: Backend, storage: ObjectStorage) {
    let server = TestServer::start_on(backend, storage, "");
    let client = server.client();
    client.ok(&["cache", "create", "a"]);
    let src = NixStore::new();
    let blob = random_bytes(21, 2 * 1024 * 1024);
    let old = src.add_input_addressed("old", &[("blob", &blob)], &[]);
    client.ok(&["push", "a", &old, "--store", &src.root()]);
    client.ok(&["cache", "delete-path", "a", &old]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The same bytes under another path: its NAR shares most chunks with the dead one.
    let new = src.add_input_addressed("new", &[("blob", &blob), ("extra", b"x")], &[]);
    std::thread::scope(|s| {
        let gc = s.spawn(|| {
            for _ in 0..6 {
                server.gc_without_grace();
            }
        });
        client.ok(&["push", "a", &new, "--store", &src.root()]);
        gc.join().unwrap();
    });
    server.gc_without_grace();
    let (ok, out, err) = server.run_mode("verify");
    assert!(ok, "{out}{err}");
    let dst = NixStore::new();
    let (ok, err) = dst.copy_from(
        &format!("{}/a", server.url),
        &new,
        &[&client.public_key("a")],
        Some((&host_of(&server.url), &server.root_token)),
    );
    assert!(ok, "{err}");
    assert_eq!(dst.read(&new, "blob"), blob);
}
