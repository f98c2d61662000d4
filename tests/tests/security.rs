//! The security fixes, end to end against a real provenixd: each checks a
//! promise of docs/threat-model.md that an outside review found broken.

use provenix_tests::ci::{world, world_with_issuer_settings, ADD_PUBLISHER};
use provenix_tests::http::{assert_refused, new_key, Http};
use provenix_tests::oidc::OidcIssuer;
use provenix_tests::{bin, random_bytes, Backend, FirstRun, NixStore, TestServer};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        out.push(path.clone());
        if path.is_dir() {
            files_under(&path, out);
        }
    }
}

/// Whatever the umask it starts with (the tests run with 022), the server's
/// database files and packs are its own alone.
#[test]
fn the_database_and_the_packs_are_not_world_readable() {
    // SAFETY: sets this test process's file-creation mask, inherited by
    // the server it starts; nothing else in this binary creates files
    // concurrently in a way that depends on it.
    unsafe {
        libc::umask(0o022);
    }
    let server = TestServer::start(Backend::Sqlite);
    let client = server.client();
    client.ok(&["cache", "create", "main"]);
    let src = NixStore::new();
    let data = random_bytes(3, 5 * 1024 * 1024);
    let path = src.add_input_addressed("secret", &[("share/secret", &data)], &[]);
    let out = client.run(&["push", "main", &path, "--store", &src.root()]);
    assert!(out.0, "push failed: {}", out.2);

    let mut made = Vec::new();
    files_under(&server.storage_dir(), &mut made);
    let packs: Vec<_> = made.iter().filter(|p| p.is_file()).collect();
    assert!(!packs.is_empty(), "the push stored no pack");
    for p in &made {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(p), want, "{}", p.display());
    }
    for name in ["server.db", "server.db-wal", "server.db-shm"] {
        let p = server.dir.path().join(name);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    assert_eq!(mode(&server.dir.path().join("server.db")), 0o600);
}

/// Item 9: an `exp` that is not an integer, an `aud` list naming another
/// party too, and a `crit` header are each refused; a one-element list of
/// our audience is still accepted.
#[tokio::test]
async fn oidc_claims_are_read_strictly() {
    let w = world("");
    let now = now();
    let float_exp = w.with(json!({ "exp": (now + 300) as f64 + 0.5 }));
    assert_refused(
        &w.exchange(&float_exp).await,
        401,
        "invalid-token",
        Some("\"exp\""),
    );
    let huge_exp = w.with(json!({ "exp": 9223372036854775808u64 }));
    assert_refused(
        &w.exchange(&huge_exp).await,
        401,
        "invalid-token",
        Some("\"exp\""),
    );
    // Found by the outsider attack: an exp near i64::MAX overflowed.
    let far_exp = w.with(json!({ "exp": i64::MAX - 59 }));
    assert_refused(
        &w.exchange(&far_exp).await,
        401,
        "invalid-token",
        Some("exp"),
    );
    let float_iat = w.with(json!({ "iat": (now - 5) as f64 }));
    assert_refused(
        &w.exchange(&float_iat).await,
        401,
        "invalid-token",
        Some("\"iat\""),
    );

    let shared_aud = w.with(json!({ "aud": [w.aud, "https://other-cache.example/"] }));
    let token = w.issuer.sign(&shared_aud);
    let jti = shared_aud["jti"].as_str().unwrap();
    let answer = w
        .http
        .exchange_oidc(&token, &w.aud, jti, "main", &new_key())
        .await;
    assert_refused(&answer, 401, "wrong-audience", Some("other-cache.example"));

    let crit = w.claims();
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": w.issuer.current_kid(),
        "crit": ["provenix-unknown"], "provenix-unknown": true});
    let token = w.issuer.sign_with_header(&header, &crit);
    let jti = crit["jti"].as_str().unwrap();
    let answer = w
        .http
        .exchange_oidc(&token, &w.aud, jti, "main", &new_key())
        .await;
    assert_refused(&answer, 401, "invalid-token", Some("critical"));

    let too_big = w.with(json!({ "padding": "x".repeat(17 * 1024) }));
    assert_refused(
        &w.exchange(&too_big).await,
        401,
        "invalid-token",
        Some("16384"),
    );

    // Not stricter than the RFC: a list holding only our audience is ours.
    let own_list = w.with(json!({ "aud": [w.aud] }));
    let token = w.issuer.sign(&own_list);
    let jti = own_list["jti"].as_str().unwrap();
    let answer = w
        .http
        .exchange_oidc(&token, &w.aud, jti, "main", &new_key())
        .await;
    assert_eq!(answer.0, 200, "{}", answer.2);
}

/// Item 10: a server with no audience of its own (no `[oidc] audience`, no
/// `api-endpoint`) exchanges no OIDC token, even one whose audience is the
/// address it listens on, and says which key to set.
#[tokio::test]
async fn a_server_without_its_own_audience_exchanges_no_oidc_tokens() {
    let issuer = OidcIssuer::start();
    let server = TestServer::start_with(Backend::Sqlite, &issuer.server_toml("github"));
    let admin = server.client();
    admin.ok(&["cache", "create", "main"]);
    admin.ok(&ADD_PUBLISHER);
    let http = Http::new(&server.url);
    let listen_address = format!("{}/", server.url);
    let claims = issuer.claims(&listen_address);
    let token = issuer.sign(&claims);
    let jti = claims["jti"].as_str().unwrap();
    let answer = http
        .exchange_oidc(&token, &listen_address, jti, "main", &new_key())
        .await;
    assert_refused(
        &answer,
        503,
        "audience-not-configured",
        Some("[oidc] audience"),
    );
    let (status, body, text) = http.get("/_api/v1/oidc/audience", None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(body["issuers"][0]["audience"], json!(null), "{text}");
}

/// The `audience = "..."` line of `[oidc]` in a config file's text.
fn written_audience(config: &str) -> String {
    config
        .lines()
        .find_map(|l| l.strip_prefix("audience = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("the first-run config names an audience")
        .to_string()
}

/// Item 10: the config written on first run names an audience unique to
/// the server, and with it (the issuer pointed at the fixture) OIDC
/// exchanges work; two first runs name two audiences.
#[tokio::test]
async fn the_first_run_config_names_a_unique_audience_that_exchanges() {
    let first_run = |home: &std::path::Path| {
        let login = FirstRun::start(&bin("provenixd"), home, |_| {})
            .login
            .clone();
        let config = home.join(".config/provenix/server.toml");
        (login.expect("a login line"), config)
    };
    let other_home = tempfile::tempdir().unwrap();
    let (_, other_config) = first_run(other_home.path());
    let home = tempfile::tempdir().unwrap();
    let (login, config_path) = first_run(home.path());
    let written = std::fs::read_to_string(&config_path).unwrap();
    let audience = written_audience(&written);
    assert!(audience.starts_with("provenix:"), "{audience}");
    assert_ne!(
        audience,
        written_audience(&std::fs::read_to_string(other_config).unwrap())
    );

    let issuer = OidcIssuer::start();
    let trusted = written
        .replace(
            "https://token.actions.githubusercontent.com",
            &issuer.issuer,
        )
        .replace(
            "name = \"github\"\n",
            &format!(
                "name = \"github\"\nca-cert = \"{}\"\n",
                issuer.ca_cert.display()
            ),
        );
    std::fs::write(&config_path, trusted).unwrap();
    let server = FirstRun::start(&bin("provenixd"), home.path(), |_| {});
    let root = login.split_whitespace().last().unwrap();
    let client = provenix_tests::Client::new();
    client.ok(&["login", "local", &server.url, root]);
    client.ok(&["cache", "create", "main"]);
    client.ok(&ADD_PUBLISHER);
    let http = Http::new(&server.url);
    let claims = issuer.claims(&audience);
    let token = issuer.sign(&claims);
    let jti = claims["jti"].as_str().unwrap();
    let answer = http
        .exchange_oidc(&token, &audience, jti, "main", &new_key())
        .await;
    assert_eq!(answer.0, 200, "{}", answer.2);
}

/// Item 11: while the issuer's JWKS fails, twenty exchanges cause one
/// fetch, not forty; after the back-off the next exchange fetches again and
/// works once the issuer is back.
#[tokio::test]
async fn a_failing_issuer_is_fetched_once_per_backoff() {
    let w = world_with_issuer_settings("jwks-failure-backoff = \"3s\"\n");
    w.issuer.set_jwks_down(true);
    let before = w.issuer.jwks_fetches();
    let w = &w;
    let answers = futures::future::join_all((0..20).map(|_| async move {
        let c = w.claims();
        w.exchange(&c).await
    }))
    .await;
    for a in &answers {
        assert_refused(a, 503, "issuer-unavailable", None);
    }
    assert_eq!(
        w.issuer.jwks_fetches() - before,
        1,
        "one fetch for twenty exchanges"
    );

    w.issuer.set_jwks_down(false);
    assert_refused(
        &w.exchange(&w.claims()).await,
        503,
        "issuer-unavailable",
        None,
    );
    assert_eq!(w.issuer.jwks_fetches() - before, 1, "still backing off");
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let answer = w.exchange(&w.claims()).await;
    assert_eq!(answer.0, 200, "{}", answer.2);
    assert_eq!(w.issuer.jwks_fetches() - before, 2);
}

/// Item 12, with the real Nix client: a netrc holding a token this server
/// refuses (another server's, say, or one long expired) still substitutes
/// from a public cache; from a private cache it fetches nothing.
#[test]
fn a_stale_netrc_token_still_substitutes_from_a_public_cache() {
    let server = TestServer::start(Backend::Sqlite);
    let client = server.client();
    client.ok(&["cache", "create", "pub"]);
    client.ok(&["cache", "configure", "pub", "--public"]);
    client.ok(&["cache", "create", "priv"]);
    let src = NixStore::new();
    let path = src.add_input_addressed("stale", &[("share/data", b"public data")], &[]);
    for cache in ["pub", "priv"] {
        let out = client.run(&["push", cache, &path, "--store", &src.root()]);
        assert!(out.0, "push failed: {}", out.2);
    }
    // A well-formed token signed by another server's secret (the test
    // servers share theirs), with pull on every cache.
    let claims = json!({"sub": "eve", "iat": now(), "exp": now() + 3600,
        "provenix": {"caches": {"*": {"r": true}}}});
    let foreign = provenix_tests::oidc::sign_hs256(
        b"another server's secret, not this one's",
        claims.as_object().unwrap(),
        "",
    );
    let host = provenix_tests::host_of(&server.url);
    for stale in [foreign.as_str(), "not-a-token"] {
        let key = client.public_key("pub");
        let dst = NixStore::new();
        let url = format!("{}/pub", server.url);
        let (ok, err) = dst.copy_from(&url, &path, &[&key], Some((&host, stale)));
        assert!(ok, "nix copy from the public cache failed: {err}");
        assert_eq!(dst.read(&path, "share/data"), b"public data");

        let key = client.public_key("priv");
        let dst = NixStore::new();
        let url = format!("{}/priv", server.url);
        let (ok, err) = dst.copy_from(&url, &path, &[&key], Some((&host, stale)));
        assert!(
            !ok,
            "a refused token substituted from the private cache: {err}"
        );
        assert!(!dst.is_valid(&path));
    }
}

/// Whether the server closes the connection (end of stream or reset)
/// within `secs`, reading and discarding what it sends meanwhile (a 431
/// answer, HTTP/2 frames).
async fn closed_within(read: &mut tokio::net::tcp::OwnedReadHalf, secs: u64) -> bool {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(std::time::Duration::from_secs(secs), async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .is_ok()
}

/// One connection of a flood: the start of a request, then 400 KB of
/// headers that never end (at once, or 4 KB every half second), the
/// socket held open. True when the server closed it within 45 s.
async fn hold_open(addr: String, slowly: bool) -> bool {
    use tokio::io::AsyncWriteExt;
    let Ok(stream) = tokio::net::TcpStream::connect(&addr).await else {
        return false;
    };
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = write
            .write_all(b"GET /main/nix-cache-info HTTP/1.1\r\nHost: localhost\r\n")
            .await;
        let line = format!("X-Pad: {}\r\n", "a".repeat(4000));
        for _ in 0..100 {
            if write.write_all(line.as_bytes()).await.is_err() {
                return;
            }
            if slowly {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    });
    let closed = closed_within(&mut read, 45).await;
    writer.abort();
    closed
}

/// Item 14: a thousand connections that each send 400 KB of headers and
/// never finish (the review's flood took the server from 15 to 422 MiB,
/// all still open 43 s later) are all closed, by the header size limit or
/// the header timeout; the server answers a real client meanwhile, and its
/// memory comes back down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unfinished_requests_is_cut_off() {
    let server = TestServer::start_with(
        Backend::Sqlite,
        "[http]\nheader-read-timeout = \"2s\"\nidle-timeout = \"5s\"\nmax-connections = 256\n",
    );
    server.client().ok(&["cache", "create", "main", "--public"]);
    let addr = server.url.trim_start_matches("http://").to_string();
    let before = server.resident_kib();
    let flood: Vec<_> = (0..1000)
        .map(|i| tokio::spawn(hold_open(addr.clone(), i % 2 == 1)))
        .collect();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let during = server.resident_kib();
    // A real client still gets its answer (it may queue behind the flood).
    let http = Http::new(&server.url);
    let (status, _, text) = http.get("/main/nix-cache-info", None).await;
    assert_eq!(status, 200, "{text}");
    let mut closed = 0;
    for f in flood {
        closed += usize::from(f.await.unwrap());
    }
    assert_eq!(closed, 1000, "connections the server left open");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let after = server.resident_kib();
    eprintln!("server memory: {before} KiB before, {during} KiB during, {after} KiB after");
    // 1,000 × 400 KB held would be ~400 MiB; at most 256 connections of at
    // most 128 KiB of headers are held at once.
    assert!(
        during < before + 100 * 1024,
        "{during} KiB during the flood"
    );
    assert!(after < before + 64 * 1024, "{after} KiB after the flood");
}

/// Item 14: a body that stops (nothing moves for `idle-timeout`) and one
/// that trickles (below `min-body-rate` once the grace is spent) are cut
/// off; the trickle is told why.
#[tokio::test]
async fn a_stalled_or_trickling_body_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The rate rule off on one server, so that only idleness ends the stall.
    let idle_only = TestServer::start_with(
        Backend::Sqlite,
        "[http]\nidle-timeout = \"3s\"\nmin-body-rate = 0\n",
    );
    let server = TestServer::start_with(
        Backend::Sqlite,
        "[http]\nmin-body-rate = 1024\nbody-rate-grace = \"1s\"\n",
    );
    let request = |server: &TestServer| {
        format!(
        "POST /_api/v1/get-missing-paths HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{",
        server.root_token
    )
    };
    let addr_of = |server: &TestServer| server.url.trim_start_matches("http://").to_string();
    let answer_within = |mut stream: tokio::net::TcpStream, limit: u64| async move {
        let mut answer = Vec::new();
        let within = tokio::time::timeout(
            std::time::Duration::from_secs(limit),
            stream.read_to_end(&mut answer),
        )
        .await
        .is_ok();
        (within, String::from_utf8_lossy(&answer).into_owned())
    };

    // Stalled: one byte of the body, then nothing.
    let mut stalled = tokio::net::TcpStream::connect(addr_of(&idle_only))
        .await
        .unwrap();
    stalled
        .write_all(request(&idle_only).as_bytes())
        .await
        .unwrap();
    let began = std::time::Instant::now();
    let (closed, _) = answer_within(stalled, 15).await;
    assert!(closed, "a stalled body kept its connection");
    let waited = began.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(2900),
        "closed after {waited:?}"
    );

    // Trickling: a byte every 300 ms, far below 1 KiB/s.
    let stream = tokio::net::TcpStream::connect(addr_of(&server))
        .await
        .unwrap();
    let (read, mut write) = stream.into_split();
    write.write_all(request(&server).as_bytes()).await.unwrap();
    let trickle = tokio::spawn(async move {
        while write.write_all(b" ").await.is_ok() {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    });
    let mut read = read;
    let mut answer = Vec::new();
    let within = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        read.read_to_end(&mut answer),
    )
    .await
    .is_ok();
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(within, "a trickling body kept its connection");
    assert!(answer.contains("min-body-rate"), "{answer}");
}

/// Item 14 over HTTP/2 (found by the outsider attack): a prior-knowledge
/// h2c connection that never sends a request, but keeps the connection busy
/// with PINGs, is closed after `header-read-timeout` like an idle HTTP/1
/// one; PING traffic does not hold a connection slot.
#[tokio::test]
async fn an_http2_connection_without_requests_is_closed() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start_with(
        Backend::Sqlite,
        "[http]\nheader-read-timeout = \"2s\"\nidle-timeout = \"60s\"\n",
    );
    let addr = server.url.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // The preface, an empty SETTINGS, and its acknowledgement of ours.
    let frame = |kind: u8, flags: u8, payload: &[u8]| {
        let len = payload.len() as u32;
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            0,
        ];
        f.extend_from_slice(payload);
        f
    };
    write
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    write.write_all(&frame(4, 0, &[])).await.unwrap();
    write.write_all(&frame(4, 1, &[])).await.unwrap();
    let pinger = tokio::spawn(async move {
        while write.write_all(&frame(6, 0, b"12345678")).await.is_ok() {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    });
    let began = std::time::Instant::now();
    let closed = closed_within(&mut read, 20).await;
    pinger.abort();
    let after = began.elapsed();
    assert!(closed, "an h2c connection with PINGs only stayed open");
    assert!(
        after >= std::time::Duration::from_millis(1900),
        "closed after {after:?}"
    );
    // A real request over HTTP/2 is still served.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
        ])
        .arg(format!("{}/", server.url))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200 2", "{out:?}");
}
