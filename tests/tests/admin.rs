//! Keys, garbage collection, tokens and server modes, through the CLIs.

use provenix_provenance::{NarInfo, PublicKey};
use provenix_tests::http::Http;
use provenix_tests::{
    backend_tests, bin, host_of, random_bytes, run, Backend, FirstRun, NixStore, ObjectStorage,
    TestServer,
};
use std::process::Command;

async fn narinfo(server: &TestServer, cache: &str, path: &str) -> (u16, String) {
    let hash = &path["/nix/store/".len().."/nix/store/".len() + 32];
    let (status, _, text) = Http::new(&server.url)
        .get(
            &format!("/{cache}/{hash}.narinfo"),
            Some(&server.root_token),
        )
        .await;
    (status, text)
}

#[tokio::test]
async fn key_rotation_keeps_the_old_key_signing_for_the_overlap() {
    let server = TestServer::start(Backend::Sqlite);
    let client = server.client();
    client.ok(&["cache", "create", "rot"]);
    let old_key = client.public_key("rot");
    let src = NixStore::new();
    let p = src.add_input_addressed("app", &[("bin/app", b"app\n")], &[]);
    client.ok(&["push", "rot", &p, "--store", &src.root()]);

    let out = client.ok(&[
        "cache",
        "configure",
        "rot",
        "--rotate-keypair",
        "--key-overlap",
        "1 day",
    ]);
    let new_key = client.public_key("rot");
    assert_ne!(new_key, old_key);
    assert!(new_key.starts_with("rot-2:"), "{new_key}");
    assert!(out.contains(&format!("Previous Key: {old_key}")), "{out}");

    // Both keys sign the narinfo; each signature verifies.
    let (_, text) = narinfo(&server, "rot", &p).await;
    let info = NarInfo::parse(&text).unwrap();
    assert_eq!(info.sigs.len(), 2, "{text}");
    for k in [&old_key, &new_key] {
        assert!(
            info.verify("/nix/store", &PublicKey::parse(k).unwrap()),
            "{k} does not verify"
        );
    }
    // A Nix client that still trusts only the old key keeps working.
    let url = format!("{}/rot", server.url);
    let netrc = (host_of(&server.url), server.root_token.clone());
    let (ok, err) = NixStore::new().copy_from(&url, &p, &[&old_key], Some((&netrc.0, &netrc.1)));
    assert!(ok, "old-key client failed during the overlap: {err}");

    // Attic's immediate regeneration: only the newest key signs.
    client.ok(&["cache", "configure", "rot", "--regenerate-keypair"]);
    let newest = client.public_key("rot");
    let (_, text) = narinfo(&server, "rot", &p).await;
    let info = NarInfo::parse(&text).unwrap();
    assert_eq!(info.sigs.len(), 1, "{text}");
    assert!(info.verify("/nix/store", &PublicKey::parse(&newest).unwrap()));
    let (ok, _) = NixStore::new().copy_from(&url, &p, &[&old_key], Some((&netrc.0, &netrc.1)));
    assert!(!ok, "a retired key still verified");
}

#[test]
fn imported_nix_key_signs() {
    let server = TestServer::start(Backend::Sqlite);
    let client = server.client();
    let dir = tempfile::tempdir().unwrap();
    let (sk, pk) = (dir.path().join("sk"), dir.path().join("pk"));
    let (ok, _, err) = run(Command::new("nix-store")
        .arg("--generate-binary-cache-key")
        .arg("imported-1")
        .arg(&sk)
        .arg(&pk));
    assert!(ok, "{err}");
    client.ok(&[
        "cache",
        "create",
        "imp",
        "--keypair-path",
        sk.to_str().unwrap(),
    ]);
    let expected = std::fs::read_to_string(&pk).unwrap();
    assert_eq!(client.public_key("imp"), expected.trim());

    let src = NixStore::new();
    let p = src.add_input_addressed("lib", &[("lib/a", b"a\n")], &[]);
    client.ok(&["push", "imp", &p, "--store", &src.root()]);
    let (ok, err) = NixStore::new().copy_from(
        &format!("{}/imp", server.url),
        &p,
        &[expected.trim()],
        Some((&host_of(&server.url), &server.root_token)),
    );
    assert!(ok, "{err}");

    // A file that is not a Nix secret key: refused, nothing created.
    std::fs::write(dir.path().join("bad"), "not-a-key").unwrap();
    let err = client.fails(&[
        "cache",
        "create",
        "imp2",
        "--keypair-path",
        dir.path().join("bad").to_str().unwrap(),
    ]);
    assert!(err.contains("invalid-keypair"), "{err}");
    assert!(client
        .fails(&["cache", "info", "imp2"])
        .contains("no-such-cache"));
}

// On SQLite, with chunks on the local disk and on S3.
backend_tests! {
    for (ObjectStorage::Local), _on_s3(ObjectStorage::S3);
    async fn gc_expires_paths_and_reaps_unreferenced_chunks => gc_expires_and_reaps;
}

/// Retention by last access per cache, orphan NARs and chunks, on a backend.
async fn gc_expires_and_reaps(storage: ObjectStorage) {
    let server = TestServer::start_on(Backend::Sqlite, storage, "");
    let client = server.client();
    client.ok(&["cache", "create", "short", "--retention-period", "1s"]);
    client.ok(&["cache", "create", "keep"]);
    let src = NixStore::new();
    let a = src.add_input_addressed("a", &[("blob", &random_bytes(1, 600_000))], &[]);
    let b = src.add_input_addressed("b", &[("blob", &random_bytes(2, 600_000))], &[]);
    client.ok(&["push", "short", &a, "--store", &src.root()]);
    client.ok(&["push", "keep", &b, "--store", &src.root()]);
    let before = server.stored_objects();

    // GC before the retention has passed (and before the chunk grace) keeps everything.
    let (ok, out, err) = server.run_mode("garbage-collector-once");
    assert!(ok, "{err}");
    assert!(out.contains("\"expired_paths\":0"), "{out}");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (ok, out, err) = server.run_mode("garbage-collector-once");
    assert!(ok, "{err}");
    assert!(
        out.contains("\"expired_paths\":1") && out.contains("\"deleted_nars\":1"),
        "{out}"
    );
    assert_eq!(narinfo(&server, "short", &a).await.0, 404);
    assert_eq!(narinfo(&server, "keep", &b).await.0, 200);
    // Chunks wait out their grace period before they are deleted.
    assert_eq!(server.stored_objects(), before);

    // With no grace, the expired path's chunks go and the kept path's stay.
    let out = server.gc_without_grace();
    let after = server.stored_objects();
    assert!(after < before && after > 0, "{before} -> {after}: {out}");
    assert!(!out.contains("\"deleted_chunks\":0"), "{out}");
    // What is left is exactly what the kept path needs: it still substitutes.
    let dst = NixStore::new();
    let key = client.public_key("keep");
    let (ok, err) = dst.copy_from(
        &format!("{}/keep", server.url),
        &b,
        &[&key],
        Some((&host_of(&server.url), &server.root_token)),
    );
    assert!(ok, "{err}");
    assert_eq!(dst.read(&b, "blob"), random_bytes(2, 600_000));

    // Deleting one path through the CLI, with and without permission.
    let reader = server.make_token(&["--sub", "r", "--validity", "1h", "--pull", "keep"]);
    let err = server
        .client_with_token(&reader)
        .fails(&["cache", "delete-path", "keep", &b]);
    assert!(err.contains("permission-denied"), "{err}");
    client.ok(&["cache", "delete-path", "keep", &b]);
    assert_eq!(narinfo(&server, "keep", &b).await.0, 404);
}

#[test]
fn tokens_grant_what_they_say() {
    let server = TestServer::start(Backend::Sqlite);
    let out = {
        let (ok, out, err) = run(Command::new(bin("provenixd"))
            .arg("-f")
            .arg(&server.config_path)
            .args([
                "make-token",
                "--sub",
                "alice",
                "--validity",
                "3 months",
                "--push",
                "alice-*",
                "--create-cache",
                "alice-*",
                "--pull",
                "*",
                "--dump-claims",
            ]));
        assert!(ok, "{err}");
        out
    };
    let claims: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["provenix"]["caches"]["alice-*"]["w"], true);
    assert_eq!(claims["provenix"]["caches"]["alice-*"]["cc"], true);
    assert_eq!(claims["provenix"]["caches"]["*"]["r"], true);
    assert!(claims["provenix"]["caches"]["*"].get("w").is_none());

    let alice = server.client_with_token(&server.make_token(&[
        "--sub",
        "alice",
        "--validity",
        "1h",
        "--create-cache",
        "alice-*",
    ]));
    alice.ok(&["cache", "create", "alice-ci"]);
    let err = alice.fails(&["cache", "create", "bob"]);
    assert!(
        err.contains("permission-denied") && err.contains("--create-cache"),
        "{err}"
    );
    let err = alice.fails(&["cache", "destroy", "alice-ci", "--no-confirm"]);
    assert!(err.contains("permission-denied"), "{err}");

    // Bad make-token input: a one-line error, no token.
    for bad in [
        vec!["--validity", "soon"],
        vec!["--validity", "1h", "--push", "a/b"],
    ] {
        let (ok, out, err) = run(Command::new(bin("provenixd"))
            .arg("-f")
            .arg(&server.config_path)
            .args(["make-token", "--sub", "x"])
            .args(&bad));
        assert!(!ok && out.is_empty(), "{bad:?} gave {out}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

/// A command's token comes from PROVENIX_TOKEN, else --token-file, else
/// the server's token-command, else the token `login` saved; no output
/// ever shows one. `cache list` shows what that token can see.
#[test]
fn tokens_come_from_the_environment_a_file_or_a_command_in_that_order() {
    let server = TestServer::start(Backend::Sqlite);
    let admin = server.client();
    admin.ok(&["cache", "create", "pub", "--public"]);
    admin.ok(&["cache", "create", "priv"]);
    admin.ok(&["cache", "create", "other"]);
    let token = |sub: &str, flags: &[&str]| {
        server.make_token(&[&["--sub", sub, "--validity", "1h"][..], flags].concat())
    };
    let (by_env, by_file, by_command, saved) = (
        token("env", &["--pull", "priv"]),
        token("file", &["--pull", "priv", "--push", "priv"]),
        token("command", &["--pull", "other"]),
        token("saved", &["--pull", "pub"]),
    );
    let files = tempfile::tempdir().unwrap();
    let token_file = files.path().join("token");
    std::fs::write(&token_file, format!("{by_file}\n")).unwrap();
    let token_file = token_file.to_str().unwrap();

    let client = provenix_tests::server::Client::new();
    let command = format!("printf '%s\\n' {by_command}");
    client.ok(&["login", "s", &server.url, "--token-command", &command]);
    let subject = |args: &[&str], env: &[(&str, &str)]| {
        let (ok, out, err) = client.run_with(&[&["whoami", "s:"][..], args].concat(), env);
        assert!(ok, "{err}");
        for t in [&by_env, &by_file, &by_command, &saved] {
            assert!(
                !out.contains(t.as_str()) && !err.contains(t.as_str()),
                "a token was printed"
            );
        }
        out.lines().next().unwrap_or("").to_string()
    };
    assert_eq!(subject(&[], &[]), "Subject: command");
    assert_eq!(subject(&["--token-file", token_file], &[]), "Subject: file");
    assert_eq!(
        subject(
            &["--token-file", token_file],
            &[("PROVENIX_TOKEN", &by_env)]
        ),
        "Subject: env"
    );
    // PROVENIX_TOKEN is for the default server: another one logged in to
    // keeps its own token unless PROVENIX_TOKEN_<NAME> names it.
    // Saved from standard input: on no command line.
    let (ok, _, err) = client.run_stdin(
        &["login", "second-one", &server.url, "--token-stdin"],
        &format!("{saved}\n"),
    );
    assert!(ok, "{err}");
    let second = |env: &[(&str, &str)]| {
        let (ok, out, err) = client.run_with(&["whoami", "second-one:"], env);
        assert!(ok, "{err}");
        out.lines().next().unwrap_or("").to_string()
    };
    assert_eq!(second(&[("PROVENIX_TOKEN", &by_env)]), "Subject: saved");
    assert_eq!(
        second(&[("PROVENIX_TOKEN_SECOND_ONE", &by_env)]),
        "Subject: env"
    );

    // What each token sees: public caches for anyone, private ones only
    // with a right on them, and those rights.
    let (ok, out, err) = client.run(&["cache", "list", "--token-file", token_file]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("priv") && lines[0].contains("private  pull, push"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("pub") && lines[1].contains("public   pull"),
        "{out}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&client.ok(&["cache", "list", "s", "--json"])).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other", "pub"], "{listed}");
    assert_eq!(listed[0]["rights"], serde_json::json!(["pull"]));
    assert_eq!(listed[0]["is_public"], false);
    let anonymous = provenix_tests::server::Client::new();
    anonymous.ok(&["login", "anon", &server.url]);
    let out = anonymous.ok(&["cache", "list"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("pub"), "{out}");

    // A failing or silent token-command, a missing or empty token file: a
    // one-line cause naming the source.
    let failing = provenix_tests::server::Client::new();
    failing.ok(&[
        "login",
        "f",
        &server.url,
        "--token-command",
        "echo nope >&2; exit 7",
    ]);
    let err = failing.fails(&["cache", "list"]);
    assert!(
        err.contains("the token-command of server \"f\" failed (exit status: 7)"),
        "{err}"
    );
    failing.ok(&["login", "f", &server.url, "--token-command", "true"]);
    assert!(failing
        .fails(&["cache", "list"])
        .contains("printed no token"));
    let err = failing.fails(&["cache", "list", "--token-file", "/nonexistent/token"]);
    assert!(
        err.contains("cannot read the token file /nonexistent/token"),
        "{err}"
    );
    std::fs::write(files.path().join("empty"), "\n").unwrap();
    let empty = files.path().join("empty");
    let err = failing.fails(&["cache", "list", "--token-file", empty.to_str().unwrap()]);
    assert!(err.contains("is empty"), "{err}");
    // A bad token is refused outright, not listed as anonymous.
    let (ok, _, err) = failing.run_with(&["cache", "list"], &[("PROVENIX_TOKEN", "not-a-token")]);
    assert!(!ok && err.contains("401"), "{err}");
    // The saved token is the last resort.
    client.ok(&["login", "s", &server.url, &saved]);
    assert_eq!(subject(&[], &[]), "Subject: saved");
    assert_eq!(subject(&[], &[("PROVENIX_TOKEN", &by_env)]), "Subject: env");
}

#[test]
fn first_run_writes_defaults_and_prints_a_working_login_line() {
    let home = tempfile::tempdir().unwrap();
    let server = FirstRun::start(&bin("provenixd"), home.path(), |_| {});
    let login = server.login.clone().expect("a provenix login line");
    let args: Vec<&str> = login.split_whitespace().collect();
    assert_eq!(args.len(), 3, "{login}");
    let client = provenix_tests::Client::new();
    client.ok(&["login", args[0], args[1], args[2]]);
    client.ok(&["cache", "create", "first"]);
    let info = client.ok(&["cache", "info", "first"]);
    assert!(info.contains("Public Key: first-1:"), "{info}");
    // With no api-endpoint set, the server names itself by the address it
    // listens on (here a port picked at start), not by the default 8080.
    let endpoint = format!(
        "Binary Cache Endpoint: {}/first",
        args[1].trim_end_matches('/')
    );
    assert!(info.contains(&endpoint), "{info}");
    drop(server);

    let config = home.path().join(".config/provenix/server.toml");
    assert!(config.exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(home.path().join(".local/share/provenix/server.db").exists());
    // The written config passes check-config.
    let (ok, out, err) = run(Command::new(bin("provenixd"))
        .arg("-f")
        .arg(&config)
        .args(["--mode", "check-config"]));
    assert!(ok && out.contains("valid"), "{err}");
}

#[test]
fn modes_and_attic_config() {
    let dir = tempfile::tempdir().unwrap();
    // Attic's documented server.toml with only the env var renamed.
    let attic = format!(
        r#"listen = "[::]:8080"
allowed-hosts = []
[database]
url = "sqlite://{0}/server.db?mode=rwc"
[storage]
type = "local"
path = "{0}/storage"
[chunking]
nar-size-threshold = 65536
min-size = 16384
avg-size = 65536
max-size = 262144
[compression]
type = "zstd"
[garbage-collection]
interval = "12 hours"
"#,
        dir.path().display()
    );
    let cfg = dir.path().join("server.toml");
    std::fs::write(&cfg, attic).unwrap();
    let provenixd = || {
        let mut c = Command::new(bin("provenixd"));
        c.arg("-f").arg(&cfg).env(
            "PROVENIX_SERVER_TOKEN_HS256_SECRET_BASE64",
            provenix_tests::server::TEST_SECRET,
        );
        c
    };
    let (ok, _, err) = run(provenixd().args(["--mode", "check-config"]));
    assert!(ok, "{err}");
    let (ok, out, err) = run(provenixd().args(["--mode", "db-migrations"]));
    assert!(ok && out.contains("migrations applied"), "{err}");
    let (ok, _, err) = run(provenixd().args(["--mode", "garbage-collector-once"]));
    assert!(ok, "{err}");
    // Without the secret: a one-line cause naming the variable.
    let (ok, _, err) = run(Command::new(bin("provenixd"))
        .arg("-f")
        .arg(&cfg)
        .args(["--mode", "check-config"])
        .env_remove("PROVENIX_SERVER_TOKEN_HS256_SECRET_BASE64"));
    assert!(
        !ok && err.contains("PROVENIX_SERVER_TOKEN_HS256_SECRET_BASE64"),
        "{err}"
    );
    // A typo in the config is an error, not silently ignored.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("listen", "lisen"),
    )
    .unwrap();
    let (ok, _, err) = run(provenixd().args(["--mode", "check-config"]));
    assert!(!ok && err.contains("lisen"), "{err}");
}

/// Issue 21's logging: stderr that is not a terminal gets no colour codes;
/// `PROVENIX_LOG_FORMAT=json` writes one JSON object per line; a line
/// about a request carries the request id the answer echoes.
#[test]
fn logs_are_plain_or_json_and_carry_the_request_id() {
    for format in ["text", "json"] {
        let home = tempfile::tempdir().unwrap();
        let log = home.path().join("provenixd.log");
        let file = std::fs::File::create(&log).unwrap();
        let server = FirstRun::start(&bin("provenixd"), home.path(), |c| {
            c.env("PROVENIX_LOG_FORMAT", format)
                .env("PROVENIX_LOG", "info,provenix_server=debug")
                .stderr(file);
        });
        // A refused token on the Nix protocol is logged (at debug) inside
        // the request's span.
        let (ok, out, _) = run(Command::new("curl")
            .args(["-s", "-D", "-", "-o", "/dev/null"])
            .args([
                "-H",
                "x-request-id: e2e-request-42",
                "-H",
                "Authorization: Bearer nope",
            ])
            .arg(format!("{}/nosuch/nix-cache-info", server.url)));
        assert!(ok);
        assert!(
            out.to_lowercase().contains("x-request-id: e2e-request-42"),
            "{out}"
        );
        drop(server);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            !text.contains('\u{1b}'),
            "colour codes in a log file:\n{text}"
        );
        let line = text
            .lines()
            .find(|l| l.contains("token refused"))
            .unwrap_or_else(|| panic!("no line about the request:\n{text}"));
        assert!(line.contains("e2e-request-42"), "{line}");
        if format == "json" {
            for l in text.lines().filter(|l| !l.trim().is_empty()) {
                serde_json::from_str::<serde_json::Value>(l)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            }
        }
    }
}

/// Issue 21: the real server answers `/metrics` to a loopback scraper, and
/// the byte counters of its connections move with what it serves.
#[tokio::test]
async fn a_real_server_is_scraped_from_loopback() {
    let server = TestServer::start(provenix_tests::Backend::Sqlite);
    let http = Http::new(&server.url);
    let count = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(-1.0)
    };
    let (status, _, first) = http.get("/metrics", None).await;
    assert_eq!(status, 200, "{first}");
    let (_, _, second) = http.get("/metrics", None).await;
    for series in [
        "provenix_http_received_bytes_total",
        "provenix_http_sent_bytes_total",
    ] {
        // The first scrape's own answer is sent after it was rendered.
        assert!(
            count(&second, series) > count(&first, series) && count(&first, series) >= 0.0,
            "{series} did not move:\n{first}\n{second}"
        );
    }
    assert!(second.contains(r#"provenix_http_requests_total{route="metrics",status="200"} 1"#));
}

backend_tests! {
    for (Backend::Sqlite), _on_postgres(Backend::Postgres);
    async fn a_pin_holds_its_closure_through_a_size_gc => pins_and_size_gc;
}

/// Growth limits through the CLIs: a cache over its `--max-stored-size`
/// loses its least recently used paths at the next GC, except a pinned
/// path's closure, which still substitutes with the real Nix client.
async fn pins_and_size_gc(backend: Backend) {
    let server = TestServer::start(backend);
    let client = server.client();
    client.ok(&["cache", "create", "main", "--max-stored-size", "1MiB"]);
    assert!(client
        .ok(&["cache", "info", "main"])
        .contains("Max Stored Size: 1048576 bytes"));
    let src = NixStore::new();
    let dep = src.add_input_addressed("dep", &[("blob", &random_bytes(11, 400_000))], &[]);
    let app = src.add_input_addressed("app", &[("blob", &random_bytes(12, 400_000))], &[&dep]);
    client.ok(&["push", "main", &app, "--store", &src.root()]);
    let out = client.ok(&["pin", "main", "release", &app]);
    assert!(out.contains("Pinned \"release\""), "{out}");
    // Pushed later, so more recently used than the pinned closure.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let x = src.add_input_addressed("x", &[("blob", &random_bytes(13, 400_000))], &[]);
    let y = src.add_input_addressed("y", &[("blob", &random_bytes(14, 400_000))], &[]);
    client.ok(&["push", "main", &x, &y, "--store", &src.root()]);

    let (ok, out, err) = server.run_mode("garbage-collector-once");
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["evicted_paths"], 2, "{out}");
    assert_eq!(report["pinned_paths"], 2, "{out}");
    let mut evicted: Vec<&str> = report["evictions"][0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    evicted.sort();
    let mut expected = vec![x.as_str(), y.as_str()];
    expected.sort();
    assert_eq!(evicted, expected, "{out}");
    for (p, status) in [(&dep, 200), (&app, 200), (&x, 404), (&y, 404)] {
        assert_eq!(narinfo(&server, "main", p).await.0, status, "{p}");
    }
    let dst = NixStore::new();
    let key = client.public_key("main");
    let (ok, err) = dst.copy_from(
        &format!("{}/main", server.url),
        &app,
        &[&key],
        Some((&host_of(&server.url), &server.root_token)),
    );
    assert!(ok, "{err}");
    assert_eq!(dst.read(&dep, "blob"), random_bytes(11, 400_000));

    let list = client.ok(&["pin", "list", "main"]);
    assert!(list.contains("release") && list.contains(&app), "{list}");
    // Pinning needs --configure-cache-retention.
    let pusher = server.make_token(&[
        "--sub",
        "ci",
        "--validity",
        "1h",
        "--push",
        "main",
        "--pull",
        "main",
    ]);
    let err = server
        .client_with_token(&pusher)
        .fails(&["pin", "main", "mine", &dep]);
    assert!(err.contains("permission-denied"), "{err}");
    let err = client.fails(&["pin", "main", "gone", &x]);
    assert!(err.contains("no-such-path"), "{err}");
    client.ok(&["pin", "remove", "main", "release"]);
    let history = client.ok(&["pin", "history", "main"]);
    assert!(
        history.contains(&format!("by root: pin release -> {app}"))
            && history.contains("by root: remove release"),
        "{history}"
    );
    assert!(client.ok(&["pin", "list", "main"]).contains("no pins"));
    let out = client.ok(&["cache", "configure", "main", "--reset-max-stored-size"]);
    assert!(out.contains("Max Stored Size: Global Default"), "{out}");
    let err = client.fails(&["cache", "configure", "main", "--max-stored-size", "ten"]);
    assert!(err.contains("not a size"), "{err}");
}
