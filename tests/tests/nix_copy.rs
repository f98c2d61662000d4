//! `nix copy --to http://HOST/CACHE?secret-key=FILE` with the real Nix
//! client (issue 20, "Nix's own nix copy --to"): a deployment tool that
//! speaks only Nix pushes with a token in its netrc and its own Nix key,
//! which an admin registered for the token's subject; the upload is
//! recorded with both, verifiable from the log, revocable by the key.
//! Unregistered or missing signatures, other subjects and removed
//! registrations push nothing.

use provenix_tests::http::Http;
use provenix_tests::{backend_tests, host_of, random_bytes, Backend, NixStore, TestServer};

backend_tests! {
    async fn nix_copy_pushes_with_a_registered_key => nix_copy_pushes_with_a_registered_key;
}

const SUBJECT: &str = "deploy-bot";

/// A 4 MiB path, a small one, and one referencing both: (big, small, top).
fn closure(store: &NixStore) -> (String, String, String) {
    let big = store.add_input_addressed("big", &[("lib/big", &random_bytes(3, 4 << 20))], &[]);
    let small = store.add_input_addressed("small", &[("bin/hi", b"#!/bin/sh\necho hi\n")], &[]);
    let top = store.add_input_addressed(
        "top",
        &[("refs", format!("{big} {small}").as_bytes())],
        &[&big, &small],
    );
    (big, small, top)
}

async fn narinfo_status(server: &TestServer, path: &str) -> u16 {
    let hash = &path["/nix/store/".len()..][..32];
    Http::new(&server.url)
        .get(&format!("/main/{hash}.narinfo"), Some(&server.root_token))
        .await
        .0
}

async fn nix_copy_pushes_with_a_registered_key(backend: Backend) {
    let server = TestServer::start_with(backend, "[log]\nintegrate-interval = \"100ms\"\n");
    let admin = server.client();
    admin.ok(&["cache", "create", "main"]);
    let cache_key = admin.public_key("main");
    let src = NixStore::new();
    let (secret, public) = src.generate_key("deploy-1");
    let out = admin.ok(&[
        "publisher",
        "add",
        "main",
        "--nix-key",
        &public,
        "--subject",
        SUBJECT,
    ]);
    assert!(
        out.contains(&format!("nix key {public} for subject {SUBJECT}")),
        "{out}"
    );
    let token = server.token_with(SUBJECT, &["push", "pull"]);
    let host = host_of(&server.url);

    // Nix's defaults (xz) for the closure.
    let (big, small, top) = closure(&src);
    let url = format!("{}/main?secret-key={}", server.url, secret.display());
    let (ok, err) = src.copy_to(&url, &top, Some((&host, &token)));
    assert!(ok, "nix copy --to failed: {err}");

    // Any Nix machine substitutes it, signed by the cache's key.
    let dst = NixStore::new();
    let pull = format!("{}/main", server.url);
    let (ok, err) = dst.copy_from(&pull, &top, &[&cache_key], Some((&host, &token)));
    assert!(ok, "nix copy --from failed: {err}");
    for p in [&big, &small, &top] {
        assert!(dst.is_valid(p), "{p} not substituted");
    }
    assert_eq!(dst.read(&big, "lib/big"), random_bytes(3, 4 << 20));

    // zstd too.
    let other = src.add_input_addressed("zstd-one", &[("f", &random_bytes(4, 100_000))], &[]);
    let zstd_url = format!("{url}&compression=zstd");
    let (ok, err) = src.copy_to(&zstd_url, &other, Some((&host, &token)));
    assert!(ok, "nix copy --to with zstd failed: {err}");
    let (ok, err) = dst.copy_from(&pull, &other, &[&cache_key], Some((&host, &token)));
    assert!(ok, "{err}");

    // Recorded with the token's subject and the registered key.
    let prov: serde_json::Value =
        serde_json::from_str(&admin.ok(&["provenance", "main", &top, "--json"])).unwrap();
    let record = &prov["uploads"][0];
    assert_eq!(record["key"]["subject"], SUBJECT, "{prov}");
    assert_eq!(record["key"]["kind"], "nix-key", "{prov}");
    assert!(
        record["statement"]
            .as_str()
            .unwrap()
            .contains(&format!("StorePath: {top}")),
        "{prov}"
    );
    let key_id = record["key"]["key_id"].as_str().unwrap().to_string();

    // Verified against the log: the key's entry, then the narinfo's signature.
    let mut tries = 0;
    let out = loop {
        let (ok, out, err) = admin.run(&["verify", "main", &top]);
        if ok {
            break out;
        }
        tries += 1;
        assert!(tries < 50, "verify kept failing: {out}{err}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    for line in [
        format!("Nix key {key_id} registered at log entry"),
        "narinfo signed by that key".into(),
        "no later revocation in the log covers it".into(),
    ] {
        assert!(out.contains(&line), "{line:?} missing from:\n{out}");
    }

    // Revoking the key hides what only it vouched for.
    let security = server.client_with_token(&server.token_with("security", &["revoke", "audit"]));
    security.ok(&["revoke", "--key", &key_id, "--reason", "deploy key leaked"]);
    for p in [&big, &small, &top, &other] {
        assert_eq!(narinfo_status(&server, p).await, 404, "{p} still served");
    }
}

#[tokio::test]
async fn nix_copy_pushes_nothing_without_a_registered_key_for_the_token() {
    let server = TestServer::start(Backend::Sqlite);
    let admin = server.client();
    admin.ok(&["cache", "create", "main"]);
    let src = NixStore::new();
    let (secret, public) = src.generate_key("deploy-1");
    let (stranger_secret, _) = src.generate_key("deploy-1");
    let token = server.token_with(SUBJECT, &["push", "pull"]);
    let host = host_of(&server.url);
    let path = src.add_input_addressed("app", &[("f", &random_bytes(5, 50_000))], &[]);
    let copy = |secret: Option<&std::path::Path>, token: &str| {
        let url = match secret {
            Some(s) => format!("{}/main?secret-key={}", server.url, s.display()),
            None => format!("{}/main", server.url),
        };
        src.copy_to(&url, &path, Some((&host, token)))
    };

    // No key registered for the subject at all.
    let (ok, err) = copy(Some(&secret), &token);
    assert!(!ok, "pushed with no registered key");
    assert!(err.contains("403"), "{err}");
    assert_eq!(narinfo_status(&server, &path).await, 404);

    let out = admin.ok(&[
        "publisher",
        "add",
        "main",
        "--nix-key",
        &public,
        "--subject",
        SUBJECT,
    ]);
    let id = out
        .split_whitespace()
        .nth(3)
        .expect("the publisher's id")
        .to_string();
    // Signed by a key of the same name that is not the registered one.
    let (ok, err) = copy(Some(&stranger_secret), &token);
    assert!(!ok, "pushed with an unregistered key");
    assert!(err.contains("403"), "{err}");
    // Not signed at all.
    let (ok, _) = copy(None, &token);
    assert!(!ok, "pushed an unsigned narinfo");
    // The registered key, with the token of a subject it is not registered for.
    let alice = server.token_with("alice", &["push", "pull"]);
    let (ok, _) = copy(Some(&secret), &alice);
    assert!(!ok, "pushed with another subject's token");
    // A token that may only pull.
    let reader = server.token_with(SUBJECT, &["pull"]);
    let (ok, _) = copy(Some(&secret), &reader);
    assert!(!ok, "pushed with a pull-only token");
    assert_eq!(narinfo_status(&server, &path).await, 404);

    // Registration removed: refused again.
    admin.ok(&["publisher", "remove", "main", &id]);
    let (ok, _) = copy(Some(&secret), &token);
    assert!(!ok, "pushed after the key's registration was removed");
    assert_eq!(narinfo_status(&server, &path).await, 404);

    // Registered again, the same push goes through.
    admin.ok(&[
        "publisher",
        "add",
        "main",
        "--nix-key",
        &public,
        "--subject",
        SUBJECT,
    ]);
    let (ok, err) = copy(Some(&secret), &token);
    assert!(ok, "{err}");
    assert_eq!(narinfo_status(&server, &path).await, 200);
}
