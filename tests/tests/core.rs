//! The binary cache core, end to end: the provenix CLI pushes from a private
//! Nix store, the real Nix client pulls and checks signatures. Each scenario
//! runs on SQLite and on PostgreSQL.

use provenix_tests::{backend_tests, host_of, random_bytes, Backend, NixStore, TestServer};

backend_tests! {
    fn push_and_pull_with_real_nix => push_and_pull_with_real_nix;
    fn use_configures_nix_to_substitute => use_configures_nix_to_substitute;
    fn same_nar_in_two_caches_is_stored_once => same_nar_in_two_caches_is_stored_once;
}

/// Three input-addressed paths: a 20 MiB one, a small one, and one that
/// references both. Returns (big, small, top).
fn make_paths(store: &NixStore) -> (String, String, String) {
    let big_data = random_bytes(7, 20 * 1024 * 1024);
    let big = store.add_input_addressed("big-lib", &[("lib/libbig.so", &big_data)], &[]);
    let small =
        store.add_input_addressed("small", &[("bin/hello", b"#!/bin/sh\necho hello\n")], &[]);
    let text = format!("uses {big} and {small}\n");
    let top = store.add_input_addressed(
        "top",
        &[("share/refs.txt", text.as_bytes())],
        &[&big, &small],
    );
    (big, small, top)
}

fn push_and_pull_with_real_nix(backend: Backend) {
    let server = TestServer::start(backend);
    let client = server.client();
    client.ok(&["cache", "create", "main"]);
    let key = client.public_key("main");
    assert!(key.starts_with("main-1:"), "{key}");

    let src = NixStore::new();
    let (big, small, top) = make_paths(&src);
    let out = client.run(&["push", "main", &top, "--store", &src.root()]);
    assert!(out.0, "push failed: {}", out.2);
    assert!(out.2.contains("Pushed 3 paths"), "{}", out.2);
    // Pushing again sends nothing.
    let again = client.ok_stderr(&["push", "main", &top, "--store", &src.root()]);
    assert!(
        again.contains("Nothing to push: 3 already cached"),
        "{again}"
    );

    let cache_url = format!("{}/main", server.url);
    let netrc = (host_of(&server.url), server.root_token.clone());

    // A fresh store substitutes the whole closure, verifying the signature.
    let dst = NixStore::new();
    let (ok, err) = dst.copy_from(&cache_url, &top, &[&key], Some((&netrc.0, &netrc.1)));
    assert!(ok, "nix copy failed: {err}");
    for p in [&big, &small, &top] {
        assert!(dst.is_valid(p), "{p} not copied");
    }
    assert_eq!(
        dst.read(&big, "lib/libbig.so"),
        random_bytes(7, 20 * 1024 * 1024)
    );
    assert_eq!(dst.read(&small, "bin/hello"), b"#!/bin/sh\necho hello\n");

    // Trusting another key: Nix refuses the unsigned-for-it path.
    let other = NixStore::new();
    let wrong_key = "main-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let (ok, err) = other.copy_from(&cache_url, &small, &[wrong_key], Some((&netrc.0, &netrc.1)));
    assert!(!ok, "a path signed by another key was accepted");
    assert!(err.contains("signature"), "{err}");
    assert!(!other.is_valid(&small));

    // No token for a private cache: nothing is substituted.
    let (ok, _) = other.copy_from(&cache_url, &small, &[&key], None);
    assert!(!ok, "a private cache served an anonymous client");
    assert!(!other.is_valid(&small));
}

fn use_configures_nix_to_substitute(backend: Backend) {
    let server = TestServer::start(backend);
    let client = server.client();
    client.ok(&["cache", "create", "team"]);
    let src = NixStore::new();
    let p = src.add_input_addressed("tool", &[("bin/tool", b"tool v1\n")], &[]);
    client.ok(&["push", "team", &p, "--store", &src.root()]);

    // `provenix use` writes the user's nix.conf and netrc; Nix then
    // substitutes from the cache on its own.
    client.ok(&["use", "team"]);
    let conf = std::fs::read_to_string(client.config_home().join("nix/nix.conf")).unwrap();
    assert!(conf.contains(&format!("{}/team", server.url)), "{conf}");
    let dst = NixStore::new();
    let mut realise = dst.nix("nix-store");
    realise.env("XDG_CONFIG_HOME", client.config_home()).args([
        "--store",
        &dst.root(),
        "--realise",
        &p,
    ]);
    let (ok, _, err) = provenix_tests::run(&mut realise);
    assert!(ok, "nix-store --realise failed: {err}");
    assert_eq!(dst.read(&p, "bin/tool"), b"tool v1\n");
}

fn same_nar_in_two_caches_is_stored_once(backend: Backend) {
    let server = TestServer::start(backend);
    let client = server.client();
    client.ok(&["cache", "create", "a"]);
    client.ok(&["cache", "create", "b"]);
    let src = NixStore::new();
    let data = random_bytes(11, 3 * 1024 * 1024);
    let p = src.add_input_addressed("shared", &[("blob", &data)], &[]);
    client.ok(&["push", "a", &p, "--store", &src.root()]);
    let objects = server.stored_objects();
    let chunks = server.verified_chunks();
    assert!(
        chunks > 10,
        "a 3 MiB NAR should be chunked, got {chunks} chunks"
    );
    assert_eq!(objects, 1, "a 3 MiB NAR's chunks are stored in one pack");

    let out = client.ok_stderr(&["push", "b", &p, "--store", &src.root()]);
    assert!(out.contains("1 deduplicated"), "{out}");
    assert_eq!(
        (server.stored_objects(), server.verified_chunks()),
        (objects, chunks),
        "the second cache stored the NAR again"
    );

    // A pusher who cannot read cache a must send the NAR (proof of
    // possession), but its chunks are still stored once.
    let pusher = server.push_token("ci", "c");
    client.ok(&["cache", "create", "c"]);
    let ci = server.client_with_token(&pusher);
    let out = ci.ok_stderr(&["push", "c", &p, "--store", &src.root()]);
    assert!(out.contains("Pushed 1 paths"), "{out}");
    assert_eq!(
        (server.stored_objects(), server.verified_chunks()),
        (objects, chunks)
    );

    let key = client.public_key("b");
    let dst = NixStore::new();
    let (ok, err) = dst.copy_from(
        &format!("{}/b", server.url),
        &p,
        &[&key],
        Some((&host_of(&server.url), &server.root_token)),
    );
    assert!(ok, "{err}");
    assert_eq!(dst.read(&p, "blob"), data);
}

#[tokio::test]
async fn push_skips_upstream_signed_paths_and_honours_nix_remote() {
    let server = TestServer::start(Backend::Sqlite);
    let client = server.client();
    client.ok(&["cache", "create", "up"]);
    let src = NixStore::new();
    let from_upstream = src.add_input_addressed("glibc", &[("lib/libc.so", b"libc\n")], &[]);
    let ours = src.add_input_addressed("app", &[("bin/app", b"app\n")], &[&from_upstream]);

    // Sign one path with a key named like cache.nixos.org's, as if substituted from it.
    let keys = tempfile::tempdir().unwrap();
    let (sk, pk) = (keys.path().join("sk"), keys.path().join("pk"));
    let (ok, _, err) = provenix_tests::run(
        src.nix("nix-store")
            .arg("--generate-binary-cache-key")
            .arg("cache.nixos.org-1")
            .arg(&sk)
            .arg(&pk),
    );
    assert!(ok, "{err}");
    let (ok, _, err) = provenix_tests::run(
        src.nix("nix")
            .args(["store", "sign", "--store", &src.root(), "--key-file"])
            .arg(&sk)
            .arg(&from_upstream),
    );
    assert!(ok, "{err}");

    // The local store named by NIX_REMOTE instead of --store.
    let (ok, _, err) = client.run_with(&["push", "up", &ours], &[("NIX_REMOTE", &src.root())]);
    assert!(ok, "{err}");
    assert!(
        err.contains("Pushed 1 paths") && err.contains("1 from upstream caches"),
        "{err}"
    );

    let http = provenix_tests::http::Http::new(&server.url);
    let hash = |p: &str| p["/nix/store/".len().."/nix/store/".len() + 32].to_string();
    let (status, _, _) = http
        .get(
            &format!("/up/{}.narinfo", hash(&from_upstream)),
            Some(&server.root_token),
        )
        .await;
    assert_eq!(status, 404, "an upstream-signed path was pushed");

    // HEAD answers like GET without a body, for narinfo and NAR.
    let c = reqwest::Client::new();
    for path in [
        format!("/up/{}.narinfo", hash(&ours)),
        format!("/up/nar/{}.nar.zst", hash(&ours)),
    ] {
        let r = c
            .head(format!("{}{path}", server.url))
            .bearer_auth(&server.root_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = c
        .head(format!(
            "{}/up/{}.narinfo",
            server.url,
            hash(&from_upstream)
        ))
        .bearer_auth(&server.root_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Paths on standard input, and the filter turned off: pushed after all.
    let (ok, _, err) = client.run_stdin(
        &[
            "push",
            "up",
            "--stdin",
            "--ignore-upstream-cache-filter",
            "--no-closure",
            "--store",
            &src.root(),
        ],
        &format!("\n{from_upstream}\n\n"),
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("Pushed 1 paths") && err.contains("0 from upstream caches"),
        "{err}"
    );
    let (status, _, _) = http
        .get(
            &format!("/up/{}.narinfo", hash(&from_upstream)),
            Some(&server.root_token),
        )
        .await;
    assert_eq!(status, 200, "pushed with the filter off");
    let (ok, _, err) = client.run_stdin(&["push", "up", "--stdin"], "\n");
    assert!(
        !ok && err.contains("no paths given on standard input"),
        "{err}"
    );
}

/// Nix's post-build-hook queue: `queue add` returns at once and loses
/// nothing; `queue run` pushes what is queued and removes an entry only
/// once the server has it, so a run that fails or is killed (-9) leaves
/// it for the next; one runner at a time; SIGTERM stops it cleanly.
#[tokio::test]
async fn the_push_queue_loses_nothing_when_killed_or_refused() {
    let server = TestServer::start(Backend::Sqlite);
    let client = server.client();
    client.ok(&["cache", "create", "main"]);
    let store = NixStore::new();
    let dep = store.add_input_addressed("q-dep", &[("lib", b"dep\n")], &[]);
    let paths: Vec<String> = (0..6)
        .map(|i| {
            store.add_input_addressed(
                &format!("q-{i}"),
                &[("bin", format!("{i}\n").as_bytes())],
                &[&dep],
            )
        })
        .collect();
    let queue_dir = tempfile::tempdir().unwrap();
    let queue = queue_dir.path().join("q");
    let queue_arg = queue.to_str().unwrap();
    let pending = || std::fs::read_dir(queue.join("pending")).map_or(0, |d| d.count());
    let http = provenix_tests::http::Http::new(&server.url);

    // Hooks running at once: every call is its own entry.
    let adders: Vec<_> = paths[..4]
        .iter()
        .map(|p| {
            client
                .command()
                .args(["queue", "add", "--queue", queue_arg, p])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut a in adders {
        assert!(a.wait().unwrap().success());
    }
    assert_eq!(pending(), 4);
    assert!(client
        .fails(&["queue", "add", "--queue", queue_arg, "not a path"])
        .contains("not a store path"));

    // The server is down: the run fails and the entries stay.
    let down = provenix_tests::server::Client::new();
    down.ok(&["login", "test", "http://127.0.0.1:9", &server.root_token]);
    let store_arg = store.root();
    let run_once = [
        "queue", "run", "main", "--queue", queue_arg, "--once", "--store", &store_arg,
    ];
    down.fails(&run_once);
    assert_eq!(pending(), 4, "nothing removed by a failed run");

    client.ok(&run_once);
    assert_eq!(pending(), 0);
    for p in &paths[..4] {
        assert_eq!(
            narinfo_status(&http, &server.root_token, p).await,
            200,
            "{p}"
        );
    }
    assert_eq!(
        narinfo_status(&http, &server.root_token, &dep).await,
        200,
        "the closure too"
    );

    // A runner that keeps watching: it pushes what arrives, refuses a
    // second runner, and a kill -9 loses nothing queued after it.
    let watch = [
        "queue", "run", "main", "--queue", queue_arg, "--store", &store_arg,
    ];
    let mut runner = client.command().args(watch).spawn().unwrap();
    client.ok(&["queue", "add", "--queue", queue_arg, &paths[4]]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while narinfo_status(&http, &server.root_token, &paths[4]).await != 200 || pending() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the runner never pushed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(client
        .fails(&watch)
        .contains("another `provenix queue run` is draining"));
    runner.kill().unwrap();
    runner.wait().unwrap();
    client.ok(&["queue", "add", "--queue", queue_arg, &paths[5]]);
    assert_eq!(pending(), 1);
    client.ok(&run_once);
    assert_eq!(
        narinfo_status(&http, &server.root_token, &paths[5]).await,
        200
    );
    assert_eq!(pending(), 0);

    // SIGTERM: the runner finishes and exits 0.
    let runner = client.command().args(watch).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (ok, _, err) = provenix_tests::run(
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(runner.id().to_string()),
    );
    assert!(ok, "{err}");
    let status = runner.wait_with_output().unwrap().status;
    assert!(status.success(), "{status:?}");
}

async fn narinfo_status(http: &provenix_tests::http::Http, token: &str, path: &str) -> u16 {
    let hash = &path["/nix/store/".len()..][..32];
    http.get(&format!("/main/{hash}.narinfo"), Some(token))
        .await
        .0
}

/// Kills a background client process when the test ends, however it ends.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_served(http: &provenix_tests::http::Http, token: &str, path: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while narinfo_status(http, token, path).await != 200 {
        assert!(std::time::Instant::now() < deadline, "{path} never pushed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `watch-exec` pushes what its command added, and exits with the
/// command's status, failing or not; `watch-store` pushes each new path
/// as it becomes valid (not what was there before), across a server
/// restart, and stops cleanly on SIGTERM.
#[tokio::test]
async fn watchers_push_what_the_store_gains() {
    // Keys that expire within the test: the watcher must renew its own.
    let mut server = TestServer::start_with(Backend::Sqlite, "[signing-keys]\nlifetime = \"3s\"\n");
    let client = server.client();
    client.ok(&["cache", "create", "main"]);
    let store = NixStore::new();
    let store_arg = store.root();
    let old = store.add_input_addressed("w-old", &[("f", b"old\n")], &[]);
    let files = tempfile::tempdir().unwrap();
    let add_cmd = |name: &str, body: &str| {
        let f = files.path().join(name);
        std::fs::write(&f, body).unwrap();
        format!("nix-store --store '{store_arg}' --add '{}'", f.display())
    };

    // watch-exec: the command's paths pushed, its status passed on.
    let script = format!("{} && exit 3", add_cmd("exec-a", "a\n"));
    let (code, out, err) = client.status(&[
        "watch-exec",
        "main",
        "--store",
        &store_arg,
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(code, 3, "{out}{err}");
    let added = out.trim().to_string();
    assert!(
        added.starts_with("/nix/store/") && added.ends_with("-exec-a"),
        "{out}"
    );
    assert!(err.contains("Pushed 1 paths"), "{err}");
    let http = provenix_tests::http::Http::new(&server.url);
    let token = server.root_token.clone();
    assert_eq!(narinfo_status(&http, &token, &added).await, 200);
    assert_eq!(
        narinfo_status(&http, &token, &old).await,
        404,
        "not added by it"
    );
    let (code, _, err) =
        client.status(&["watch-exec", "main", "--store", &store_arg, "--", "true"]);
    assert_eq!(code, 0);
    assert!(err.contains("added no paths"), "{err}");
    let (code, _, _) = client.status(&["watch-exec", "main", "--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(code, 128 + 9, "a signal, as shells report it");

    // watch-store: new paths only, as they become valid.
    let log = files.path().join("watch.log");
    let watcher = Background(
        client
            .command()
            .args([
                "watch-store",
                "main",
                "--store",
                &store_arg,
                "--interval",
                "200ms",
            ])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let keys_used = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let keys: std::collections::BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.split(" with key ").nth(1))
            .filter_map(|k| k.split_whitespace().next())
            .map(str::to_string)
            .collect();
        keys.len()
    };
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let first = store.add_input_addressed("w-first", &[("f", b"first\n")], &[&old]);
    wait_served(&http, &token, &first).await;
    assert_eq!(
        narinfo_status(&http, &token, &old).await,
        200,
        "its closure"
    );
    assert_eq!(keys_used(), 1);
    // Its key expires: the next push signs with a renewed one.
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let third = store.add_input_addressed("w-third", &[("f", b"third\n")], &[]);
    wait_served(&http, &token, &third).await;
    assert_eq!(keys_used(), 2, "{}", std::fs::read_to_string(&log).unwrap());

    // The server restarts (same address): the watcher retries and goes on.
    server.restart_on_same_port();
    let second = store.add_input_addressed("w-second", &[("f", b"second\n")], &[]);
    let http = provenix_tests::http::Http::new(&server.url);
    wait_served(&http, &token, &second).await;

    // SIGTERM right after a build: the watcher looks once more, pushes
    // it, and stops cleanly.
    let last = store.add_input_addressed("w-last", &[("f", b"last\n")], &[]);
    let mut watcher = watcher;
    let (ok, _, err) = provenix_tests::run(
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(watcher.0.id().to_string()),
    );
    assert!(ok, "{err}");
    let status = watcher.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        narinfo_status(&http, &token, &last).await,
        200,
        "pushed before it stopped"
    );
}
