//! The identity exchange, end to end: an OIDC issuer fixture shaped like
//! GitHub Actions' (discovery and JWKS over HTTPS), a real provenixd trusting
//! it through `ca-cert`, the provenix CLI inside a simulated Actions job, and
//! the real Nix client pulling what the job pushed.

use provenix_tests::ci::{run_ci, world, world_on, ADD_PUBLISHER, OWNER_ID, REPO_ID};
use provenix_tests::http::{assert_refused, new_key, sample_nar, upload_info, Http};
use provenix_tests::oidc::{sign_hs256, unsigned};
use provenix_tests::{host_of, Backend, NixStore};
use serde_json::{json, Value};

#[test]
fn a_github_actions_job_pushes_without_a_token_and_nix_pulls() {
    let w = world("");
    // The job holds only a pull token (to read the private cache); the push
    // is signed by its own identity.
    let pull = w
        .server
        .make_token(&["--sub", "ci-reader", "--validity", "1h", "--pull", "main"]);
    let (ci, env) = w.ci_client_with(Some(&pull));
    let src = NixStore::new();
    let lib = src.add_input_addressed("ci-lib", &[("lib/a.so", b"library bytes")], &[]);
    let text = format!("links {lib}\n");
    let app = src.add_input_addressed("ci-app", &[("bin/app", text.as_bytes())], &[&lib]);

    let (ok, _, err) = run_ci(&ci, &env, &["push", "main", &app, "--store", &src.root()]);
    assert!(ok, "push from CI failed: {err}");
    assert!(err.contains("Pushed 2 paths"), "{err}");
    assert!(
        err.contains("Signing as repo:octo-org/octo-repo:ref:refs/heads/main"),
        "{err}"
    );

    // whoami inside the job: the identity and the key's validity.
    let (ok, out, err) = run_ci(&ci, &env, &["whoami", "main"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("Identity: repo:octo-org/octo-repo:ref:refs/heads/main"),
        "{out}"
    );
    assert!(out.contains(&format!("repository_id: {REPO_ID}")), "{out}");
    assert!(
        out.contains(
            "workflow_ref: octo-org/octo-repo/.github/workflows/build.yml@refs/heads/main"
        ),
        "{out}"
    );
    assert!(out.contains("(900 seconds)"), "{out}");

    // The real Nix client substitutes what the job pushed, signed by the cache key.
    let admin = w.server.client();
    let key = admin.public_key("main");
    let dst = NixStore::new();
    let netrc = (host_of(&w.server.url), w.server.root_token.clone());
    let (ok, err) = dst.copy_from(
        &format!("{}/main", w.server.url),
        &app,
        &[&key],
        Some((&netrc.0, &netrc.1)),
    );
    assert!(ok, "nix copy failed: {err}");
    assert_eq!(dst.read(&lib, "lib/a.so"), b"library bytes");

    // Outside Actions the pull token is what gets exchanged: refused.
    let err = ci.fails(&["push", "main", &app, "--store", &src.root()]);
    assert!(err.contains("permission-denied"), "{err}");
    // Outside Actions and without a token, push says what is missing.
    let (bare, _) = w.ci_client();
    let err = bare.fails(&["push", "main", &app, "--store", &src.root()]);
    assert!(err.contains("ACTIONS_ID_TOKEN_REQUEST_URL"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // A refused exchange is one line naming the code.
    w.issuer
        .set_claims(json!({"event_name": "pull_request_target"}));
    let (ok, _, err) = run_ci(&ci, &env, &["push", "main", &app, "--store", &src.root()]);
    assert!(!ok);
    assert!(err.contains("event-not-allowed"), "{err}");
    assert!(err.contains("pull_request_target"), "{err}");
}

#[tokio::test]
async fn the_certificate_is_fulcio_shaped_and_chains_to_the_ca() {
    let w = world("");
    let a = w
        .exchange(&w.with(json!({"environment": "production"})))
        .await;
    assert_eq!(a.0, 200, "{}", a.2);
    assert_eq!(
        a.1["not_after"].as_i64().unwrap() - a.1["not_before"].as_i64().unwrap(),
        900
    );
    assert_eq!(a.1["identity"]["claims"]["repository_id"], REPO_ID);
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, a.1["certificate"].as_str().unwrap()).unwrap();
    let (status, _, ca_pem) = w.http.get("/.well-known/provenix/ca.pem", None).await;
    assert_eq!(status, 200);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &ca_pem).unwrap();

    let (ok, text, err) = provenix_tests::run(
        std::process::Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&cert),
    );
    assert!(ok, "openssl cannot parse the certificate: {err}");
    for expected in [
        "ED25519",
        "Code Signing",
        "URI:https://github.com/octo-org/octo-repo/.github/workflows/build.yml@refs/heads/main",
        "provenix signing-key CA",
        "CA:FALSE",
    ] {
        assert!(
            text.contains(expected),
            "certificate lacks {expected:?}:\n{text}"
        );
    }
    for n in 8..=24 {
        let oid = format!("1.3.6.1.4.1.57264.1.{n}");
        assert!(text.contains(&oid), "certificate lacks {oid}:\n{text}");
    }
    for value in [
        "https://github.com/octo-org/octo-repo/actions/runs/5386839201/attempts/1",
        "github-hosted",
        "production",
        &w.issuer.issuer,
    ] {
        assert!(text.contains(value), "certificate lacks {value:?}:\n{text}");
    }
    // It verifies against the published CA (OpenSSL 3.0 has no codesign purpose; the EKU is checked above).
    let (ok, out, err) = provenix_tests::run(
        std::process::Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&ca)
            .arg(&cert),
    );
    assert!(ok && out.contains("OK"), "openssl verify: {out}{err}");
}

#[tokio::test]
async fn forged_expired_and_mismatched_tokens_are_refused() {
    let w = world("");
    let now = provenix_tests::unix_now();

    let c = w.claims();
    assert_refused(
        &w.exchange_raw(&w.issuer.sign_with_stranger_key(&c), &c)
            .await,
        401,
        "invalid-token",
        Some("signature"),
    );
    let c = w.claims();
    assert_refused(
        &w.exchange_raw(&unsigned(&c), &c).await,
        401,
        "invalid-token",
        Some("\"none\""),
    );
    // HS256 keyed with the issuer's public key: the algorithm-confusion attack.
    let c = w.claims();
    let kid = w.issuer.current_kid();
    let hs = sign_hs256(&w.issuer.public_key_der(), &c, &kid);
    assert_refused(
        &w.exchange_raw(&hs, &c).await,
        401,
        "invalid-token",
        Some("HS256"),
    );
    let c = w.with(json!({"iss": "https://token.actions.githubusercontent.com.evil.example"}));
    assert_refused(
        &w.exchange(&c).await,
        401,
        "unknown-issuer",
        Some("evil.example"),
    );
    let c = w.with(json!({"aud": "https://another-cache.example/"}));
    assert_refused(
        &w.exchange(&c).await,
        401,
        "wrong-audience",
        Some(w.aud.as_str()),
    );
    let c = w.with(json!({"exp": now - 120, "iat": now - 600, "nbf": now - 600}));
    assert_refused(&w.exchange(&c).await, 401, "expired", Some("exp"));
    let c = w.with(json!({"nbf": now + 600, "iat": now}));
    assert_refused(&w.exchange(&c).await, 401, "not-yet-valid", Some("nbf"));
    let mut c = w.claims();
    c.remove("jti");
    let token = w.issuer.sign(&c);
    c.insert("jti".into(), json!(""));
    assert_refused(
        &w.exchange_raw(&token, &c).await,
        401,
        "invalid-token",
        Some("jti"),
    );

    // A proof of possession made by another key than the one presented.
    let c = w.claims();
    let token = w.issuer.sign(&c);
    let presented = new_key();
    let pk = provenix_provenance::exchange::encode_public_key(&presented.verifying_key());
    let msg = provenix_provenance::exchange::proof_message(
        &w.aud,
        c["jti"].as_str().unwrap(),
        "main",
        &pk,
    );
    let proof = provenix_provenance::exchange::sign(&new_key(), &msg);
    let a = w
        .http
        .post_json(
            "/_api/v1/keys/exchange",
            None,
            &json!({"cache": "main", "public_key": pk, "oidc_token": token, "proof": proof}),
        )
        .await;
    assert_refused(&a, 401, "invalid-proof", Some("proof of possession"));
    // The token was not spent by the refusal: the honest proof still works once...
    let a = w.exchange_raw(&token, &c).await;
    assert_eq!(a.0, 200, "{}", a.2);
    // ...and only once.
    assert_refused(
        &w.exchange_raw(&token, &c).await,
        401,
        "token-reused",
        Some("already"),
    );
}

#[tokio::test]
async fn publishers_match_on_ids_workflow_event_and_runner() {
    let w = world("");
    let admin = w.server.client();
    // Same repository name, another repository (deleted and re-created): on
    // the private cache this stranger learns nothing, not even that the
    // cache exists (the answer a missing cache gets)...
    let stranger = w.with(json!({"repository_id": "99"}));
    let token = w.issuer.sign(&stranger);
    let jti = stranger["jti"].as_str().unwrap();
    let hidden = w
        .http
        .exchange_oidc(&token, &w.aud, jti, "main", &new_key())
        .await;
    let missing = w
        .http
        .exchange_oidc(&token, &w.aud, jti, "nosuch", &new_key())
        .await;
    assert_refused(
        &hidden,
        403,
        "no-matching-publisher",
        Some("no trusted publishers"),
    );
    assert_eq!(
        hidden.1["message"].as_str().unwrap().replace("main", "X"),
        missing.1["message"]
            .as_str()
            .unwrap()
            .replace("nosuch", "X")
    );
    assert!(
        !hidden.2.contains("octo-org") && !hidden.2.contains("build.yml"),
        "{}",
        hidden.2
    );
    // ...while on a public cache the refusal names the claim that differed.
    admin.ok(&["cache", "configure", "main", "--public"]);
    let a = w.exchange(&stranger).await;
    assert_refused(&a, 403, "no-matching-publisher", Some("repository_id"));
    admin.ok(&["cache", "configure", "main", "--private"]);
    // Same owner name, another account (resurrected login).
    let a = w
        .exchange(&w.with(json!({"repository_owner_id": "99"})))
        .await;
    assert_refused(
        &a,
        403,
        "no-matching-publisher",
        Some("repository_owner_id"),
    );
    // Another workflow file of the same repository.
    let release = "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main";
    let a = w
        .exchange(&w.with(json!({"workflow_ref": release, "job_workflow_ref": release})))
        .await;
    assert_refused(&a, 403, "no-matching-publisher", Some("build.yml"));
    // pull_request_target and self-hosted runners need opting in.
    let prt = w.with(json!({"event_name": "pull_request_target"}));
    assert_refused(
        &w.exchange(&prt).await,
        403,
        "event-not-allowed",
        Some("pull_request_target"),
    );
    let self_hosted = w.with(json!({"runner_environment": "self-hosted"}));
    assert_refused(
        &w.exchange(&self_hosted).await,
        403,
        "self-hosted-runner-not-allowed",
        Some("self-hosted"),
    );
    // A reusable workflow from another repository must be named.
    let reusable =
        w.with(json!({"job_workflow_ref": "shared-org/ci/.github/workflows/nix.yml@refs/tags/v1"}));
    assert_refused(
        &w.exchange(&reusable).await,
        403,
        "no-matching-publisher",
        Some("--reusable-workflow"),
    );
    // The id-bearing sub format is accepted; a sub naming other ids is not.
    let a = w
        .exchange(&w.with(json!({"sub": format!("repo:octo-org@{OWNER_ID}/octo-repo@{REPO_ID}:ref:refs/heads/main")})))
        .await;
    assert_eq!(a.0, 200, "{}", a.2);
    let a = w
        .exchange(&w.with(json!({"sub": "repo:octo-org@1/octo-repo@2:ref:refs/heads/main"})))
        .await;
    assert_refused(&a, 403, "no-matching-publisher", Some("sub"));

    // Publishers that opt in accept exactly those.
    let github = ADD_PUBLISHER;
    admin.ok(&[
        &github[..],
        &[
            "--allow-event",
            "pull_request_target",
            "--allow-self-hosted",
            "--ref",
            "refs/heads/main",
        ],
    ]
    .concat());
    admin.ok(&[
        &github[..],
        &[
            "--reusable-workflow",
            "shared-org/ci/.github/workflows/nix.yml@refs/tags/v*",
        ],
    ]
    .concat());
    // The very tokens refused above (same jti: a refusal spends nothing).
    for claims in [&prt, &self_hosted, &reusable] {
        let a = w.exchange(claims).await;
        assert_eq!(a.0, 200, "{}", a.2);
        // Now spent.
        assert_refused(
            &w.exchange(claims).await,
            401,
            "token-reused",
            Some("already"),
        );
    }
    // Its ref restriction holds.
    let a = w
        .exchange(&w.with(json!({"ref": "refs/heads/dev", "runner_environment": "self-hosted"})))
        .await;
    assert_refused(&a, 403, "no-matching-publisher", Some("ref"));

    // A cache without publishers, and one that does not exist, answer alike.
    admin.ok(&["cache", "create", "empty"]);
    let c = w.claims();
    let token = w.issuer.sign(&c);
    let jti = c["jti"].as_str().unwrap();
    let a = w
        .http
        .exchange_oidc(&token, &w.aud, jti, "empty", &new_key())
        .await;
    let b = w
        .http
        .exchange_oidc(&token, &w.aud, jti, "nosuch", &new_key())
        .await;
    assert_refused(
        &a,
        403,
        "no-matching-publisher",
        Some("no trusted publishers"),
    );
    assert_eq!(
        a.1["message"].as_str().unwrap().replace("empty", "X"),
        b.1["message"].as_str().unwrap().replace("nosuch", "X")
    );
}

#[tokio::test]
async fn es256_tokens_are_accepted_and_an_rs256_header_on_them_is_not() {
    let w = world("");
    w.issuer.enable_es256();
    let c = w.claims();
    let token = w.issuer.sign_es256(&c);
    let a = w.exchange_raw(&token, &c).await;
    assert_eq!(a.0, 200, "{}", a.2);
    // The EC key may not verify a token whose header claims RS256.
    let c = w.claims();
    let forged = w
        .issuer
        .sign_with_header(&json!({"alg": "RS256", "kid": "fixture-ec-key"}), &c);
    assert_refused(
        &w.exchange_raw(&forged, &c).await,
        401,
        "invalid-token",
        Some("RS256"),
    );
}

#[tokio::test]
async fn an_issuer_that_rotates_its_key_still_works() {
    let w = world("");
    let a = w.exchange(&w.claims()).await;
    assert_eq!(a.0, 200, "{}", a.2);
    assert_eq!(w.issuer.jwks_fetches(), 1);
    // The cached JWKS is reused while fresh.
    let a = w.exchange(&w.claims()).await;
    assert_eq!(a.0, 200, "{}", a.2);
    assert_eq!(w.issuer.jwks_fetches(), 1);
    // A new kid makes the server fetch the JWKS again at once.
    w.issuer.rotate_key();
    let a = w.exchange(&w.claims()).await;
    assert_eq!(a.0, 200, "{}", a.2);
    assert_eq!(w.issuer.jwks_fetches(), 2);
    // Random kids do not make it hammer the issuer.
    for n in 0..3 {
        let c = w.claims();
        let token = w.issuer.sign_with_kid(&c, &format!("random-kid-{n}"));
        assert_refused(
            &w.exchange_raw(&token, &c).await,
            401,
            "invalid-token",
            Some("random-kid"),
        );
    }
    assert!(w.issuer.jwks_fetches() <= 3, "{}", w.issuer.jwks_fetches());
}

#[tokio::test]
async fn a_key_past_its_lifetime_is_refused() {
    let w = world("[signing-keys]\nlifetime = \"2s\"\n");
    let root = w.server.root_token.clone();
    let key = w.http.key_for(&root, "main").await;
    assert_eq!(
        key.answer["not_after"].as_i64().unwrap() - key.answer["not_before"].as_i64().unwrap(),
        2
    );
    std::thread::sleep(std::time::Duration::from_millis(3200));
    let nar = sample_nar("late");
    let info = upload_info(
        "main",
        "/nix/store/7rjj86a15146cq1d3qy068lml7n8ykzm-late",
        &nar,
    );
    let a = w.http.signed_upload(&key, &info, &nar).await;
    assert_refused(&a, 401, "key-expired", Some("valid until"));
    let (status, _, _) = w
        .http
        .get(
            "/main/7rjj86a15146cq1d3qy068lml7n8ykzm.narinfo",
            Some(&root),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn people_exchange_their_token_and_session_tokens_do_not_chain() {
    let w = world("");
    let root = w.server.root_token.clone();
    let key = w.http.key_for(&root, "main").await;
    assert_eq!(key.answer["identity"]["kind"], "token");
    assert_eq!(key.answer["identity"]["subject"], "root");
    // The session token handed out with a key cannot buy another key.
    let a = w
        .http
        .exchange_token(&key.access_token, "main", &new_key())
        .await;
    assert_refused(&a, 403, "session-token", Some("OIDC"));
    // A public key is certified once.
    let reused = w.http.exchange_token(&root, "main", &key.key).await;
    assert_refused(&reused, 409, "key-reused", Some("fresh key"));
    // A token for another cache gets no key for this one.
    let other = w
        .server
        .make_token(&["--sub", "o", "--validity", "1h", "--push", "other"]);
    let a = w.http.exchange_token(&other, "main", &new_key()).await;
    assert_refused(&a, 404, "no-such-cache", Some("main"));
}

/// `publisher add main` for x.yml of `repo` (ids 1).
fn add_github_publisher(repo: &str) -> [&str; 11] {
    [
        "publisher",
        "add",
        "main",
        "--github",
        repo,
        "--repository-id",
        "1",
        "--owner-id",
        "1",
        "--workflow",
        "x.yml",
    ]
}

#[test]
fn publishers_are_managed_with_configure_cache() {
    let w = world("");
    let admin = w.server.client();
    let out = admin.ok(&["publisher", "list", "main"]);
    assert!(out.contains("github octo-org/octo-repo (repository id 42000001, owner id 7000001) workflow build.yml"), "{out}");
    let json: Value =
        serde_json::from_str(&admin.ok(&["publisher", "list", "main", "--json"])).unwrap();
    assert_eq!(json[0]["publisher"]["repository-id"], 42000001);
    assert_eq!(json[0]["created_by"], "root");

    // Push permission does not manage publishers.
    let pusher = w.server.push_token("p", "main");
    let p = w.server.client_with_token(&pusher);
    let err = p.fails(&add_github_publisher("evil/repo"));
    assert!(
        err.contains("permission-denied") && err.contains("--configure-cache"),
        "{err}"
    );
    let err = p.fails(&["publisher", "remove", "main", "1"]);
    assert!(err.contains("permission-denied"), "{err}");
    let err = p.fails(&["publisher", "list", "main"]);
    assert!(err.contains("permission-denied"), "{err}");

    // Bad publishers are refused with a reason, before and at the server.
    let err = admin.fails(&add_github_publisher("no-slash"));
    assert!(err.contains("OWNER/REPO"), "{err}");
    let err = admin.fails(&[
        "publisher",
        "add",
        "main",
        "--issuer",
        "gitlab",
        "--claim",
        "project_path=group/*",
    ]);
    assert!(
        err.contains("unknown-issuer") && err.contains("gitlab"),
        "{err}"
    );
    let err = admin.fails(&[
        "publisher",
        "add",
        "main",
        "--issuer",
        "github",
        "--claim",
        "sub=*",
    ]);
    assert!(err.contains("pin a value"), "{err}");

    // A generic publisher on the same issuer matches by claim globs.
    admin.ok(&[
        "publisher",
        "add",
        "main",
        "--issuer",
        "github",
        "--claim",
        "repository=other-org/*",
        "--claim",
        "ref=refs/tags/*",
    ]);

    // Removing the publisher stops the exchange.
    admin.ok(&["publisher", "remove", "main", "1"]);
    let err = admin.fails(&["publisher", "remove", "main", "1"]);
    assert!(err.contains("no-such-publisher"), "{err}");
    let (ci, env) = w.ci_client();
    let (ok, _, err) = run_ci(&ci, &env, &["whoami", "main"]);
    assert!(!ok);
    assert!(err.contains("no-matching-publisher"), "{err}");
    w.issuer
        .set_claims(json!({"repository": "other-org/tool", "ref": "refs/tags/v2"}));
    let (ok, out, err) = run_ci(&ci, &env, &["whoami", "main"]);
    assert!(ok, "{err}");
    assert!(out.contains("repository: other-org/tool"), "{out}");
}

/// jti single use lives in the database: another replica (and a restarted
/// server) refuses a token one of them already exchanged.
#[tokio::test]
async fn a_replayed_token_is_refused_by_another_replica() {
    // Both replicas must expect the same audience: configure it.
    let w = world_on(Backend::Postgres, "", Some("provenix-replicas-test"));
    let replica = provenix_tests::server::spawn_server(
        &w.server.config_path,
        w.server.dir.path(),
        &["--listen", "127.0.0.1:0"],
    );
    let mut child = replica.0;
    let other = Http::new(&replica.1);
    let c = w.claims();
    let token = w.issuer.sign(&c);
    let jti = c["jti"].as_str().unwrap();
    let a = w
        .http
        .exchange_oidc(&token, &w.aud, jti, "main", &new_key())
        .await;
    assert_eq!(a.0, 200, "{}", a.2);
    let b = other
        .exchange_oidc(&token, &w.aud, jti, "main", &new_key())
        .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_refused(&b, 401, "token-reused", Some("already"));
}

/// A GitLab CI job (its `id_tokens:` token in PROVENIX_ID_TOKEN, GitLab's
/// claim set from the issuer fixture) pushes to a cache whose publisher
/// names the project and namespace by id and the project's own CI config;
/// the record carries the project, and every refusal says what differs
/// only to the project the cache trusts.
#[tokio::test]
async fn a_gitlab_ci_job_pushes_with_its_id_token() {
    let issuer = provenix_tests::oidc::OidcIssuer::start();
    let aud = "provenix-gitlab-test";
    let server = provenix_tests::TestServer::start_with(
        Backend::Sqlite,
        &format!("{}audience = \"{aud}\"\n", issuer.server_toml("gitlab")),
    );
    let admin = server.client();
    admin.ok(&["cache", "create", "main"]);
    let out = admin.ok(&[
        "publisher",
        "add",
        "main",
        "--gitlab",
        "acme/tools/app",
        "--project-id",
        "4242",
        "--namespace-id",
        "77",
        "--ci-config",
        ".gitlab-ci.yml",
        "--protected-ref",
        "--ref",
        "main",
    ]);
    assert!(out.contains("Trusted publisher 1 added"), "{out}");
    assert!(
        admin
            .ok(&["publisher", "list", "main"])
            .contains("gitlab acme/tools/app (project id 4242, namespace id 77) ci config .gitlab-ci.yml ref main +protected-ref"),
    );
    let store = NixStore::new();
    let path = store.add_input_addressed("gl-app", &[("bin/app", b"gitlab\n")], &[]);
    let job = provenix_tests::server::Client::new();
    job.ok(&["login", "ci", &server.url]);
    let push = ["push", "main", &path, "--store", &store.root()];
    let token = |overrides: Value| {
        let mut claims = issuer.gitlab_claims(aud);
        for (k, v) in overrides.as_object().unwrap() {
            claims.insert(k.clone(), v.clone());
        }
        issuer.sign(&claims)
    };

    let good = token(json!({}));
    let (ok, _, err) = job.run_with(&push, &[("PROVENIX_ID_TOKEN", &good)]);
    assert!(ok, "{err}");
    assert!(
        err.contains("Signing as project_path:acme/tools/app:ref_type:branch:ref:main"),
        "{err}"
    );
    // The record: the project's path and id, the pipeline, the config.
    let prov: Value =
        serde_json::from_str(&admin.ok(&["provenance", "main", &path, "--json"])).unwrap();
    let key = &prov["uploads"][0]["key"];
    assert_eq!(key["claims"]["project_id"], "4242");
    assert_eq!(key["claims"]["pipeline_id"], "987654");
    let found = admin.ok(&["audit", "main", "--repository", "acme/tools/app", "--json"]);
    assert!(
        found.contains(&path),
        "audit by the project's path: {found}"
    );
    // The certificate names the pipeline's config, Fulcio-style.
    let text = certificate_text(key["certificate"].as_str().unwrap());
    let host = issuer.issuer.trim_start_matches("https://");
    assert!(
        text.contains(&format!(
            "URI:https://{host}/acme/tools/app//.gitlab-ci.yml@refs/heads/main"
        )),
        "{text}"
    );
    assert!(text.contains("/acme/tools/app/-/jobs/1212"), "{text}");

    // The same token again: its jti is spent.
    let (ok, _, err) = job.run_with(&push, &[("PROVENIX_ID_TOKEN", &good)]);
    assert!(!ok && err.contains("token-reused"), "{err}");
    // Under a variable the job names.
    let (ok, _, err) = job.run_with(
        &push,
        &[
            ("PROVENIX_ID_TOKEN_VAR", "CACHE_TOKEN"),
            ("CACHE_TOKEN", &token(json!({}))),
        ],
    );
    assert!(ok, "{err}");

    // The trusted project, told why: an unprotected branch, another CI
    // file, another ref.
    for (overrides, why) in [
        (json!({"ref_protected": "false"}), "ref_protected"),
        (
            json!({"ci_config_ref_uri": format!("{host}/acme/tools/app//other.yml@refs/heads/main")}),
            "ci_config_ref_uri",
        ),
        (json!({"ref": "feature"}), "claim ref"),
    ] {
        let (ok, _, err) = job.run_with(&push, &[("PROVENIX_ID_TOKEN", &token(overrides.clone()))]);
        assert!(
            !ok && err.contains("no-matching-publisher") && err.contains(why),
            "{overrides}: {err}"
        );
    }
    // Another project (any GitLab user can make a token): the private
    // cache answers as a missing one.
    let (ok, _, err) = job.run_with(
        &push,
        &[(
            "PROVENIX_ID_TOKEN",
            &token(json!({"project_id": "5000", "namespace_id": "78"})),
        )],
    );
    assert!(
        !ok && err.contains("the cache has no trusted publishers"),
        "{err}"
    );
    let (_, _, missing) = job.run_with(
        &["push", "nonexistent", &path, "--store", &store.root()],
        &[("PROVENIX_ID_TOKEN", &token(json!({})))],
    );
    assert_eq!(
        err.replace("\"main\"", "\"nonexistent\""),
        missing,
        "a hidden cache answers as a missing one"
    );
    // A token for another audience.
    let mut other = issuer.gitlab_claims("someone-else");
    other.insert("x".into(), json!(1));
    let (ok, _, err) = job.run_with(&push, &[("PROVENIX_ID_TOKEN", &issuer.sign(&other))]);
    assert!(!ok, "{err}");
}

/// GitHub Enterprise Server: an issuer of its own (`[[oidc.issuers]]`
/// with the enterprise's `server-url`), publishers naming it, and the job
/// finding it from PROVENIX_OIDC_ISSUER (or from GITHUB_SERVER_URL, tested
/// in the client's unit tests: the fixture is no `/_services/token`).
#[tokio::test]
async fn a_github_enterprise_job_pushes_through_its_own_issuer() {
    let issuer = provenix_tests::oidc::OidcIssuer::start();
    let aud = "provenix-ghes-test";
    let server = provenix_tests::TestServer::start_with(
        Backend::Sqlite,
        &format!(
            "{}audience = \"{aud}\"\nserver-url = \"https://ghes.example\"\n",
            issuer.server_toml("ghes")
        ),
    );
    let admin = server.client();
    admin.ok(&["cache", "create", "main"]);
    admin.ok(&[&ADD_PUBLISHER[..], &["--issuer", "ghes"]].concat());
    let store = NixStore::new();
    let path = store.add_input_addressed("ghes-app", &[("bin/app", b"ghes\n")], &[]);
    let job = provenix_tests::server::Client::new();
    job.ok(&["login", "ci", &server.url]);
    let push = ["push", "main", &path, "--store", &store.root()];
    let env = |issuer_name: &str| {
        vec![
            ("ACTIONS_ID_TOKEN_REQUEST_URL", issuer.request_url.clone()),
            (
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                issuer.request_token.clone(),
            ),
            ("PROVENIX_OIDC_ISSUER", issuer_name.to_string()),
        ]
    };
    // Without naming the issuer the job asks for github's, which this
    // server does not trust.
    let (ok, _, err) = run_ci(&job, &env(""), &push);
    assert!(
        !ok && err.contains("accepts no tokens from issuer \"github\""),
        "{err}"
    );
    let (ok, _, err) = run_ci(&job, &env("ghes"), &push);
    assert!(ok, "{err}");
    let prov: Value =
        serde_json::from_str(&admin.ok(&["provenance", "main", &path, "--json"])).unwrap();
    let text = certificate_text(prov["uploads"][0]["key"]["certificate"].as_str().unwrap());
    assert!(
        text.contains("URI:https://ghes.example/octo-org/octo-repo/.github/workflows/build.yml@refs/heads/main"),
        "the enterprise's URLs: {text}"
    );
}

/// `openssl x509 -text` of a PEM certificate: what a person inspecting it sees.
fn certificate_text(pem: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cert.pem");
    std::fs::write(&file, pem).unwrap();
    let (ok, text, err) = provenix_tests::run(
        std::process::Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&file),
    );
    assert!(ok, "openssl cannot parse the certificate: {err}");
    text
}

/// Forgejo Actions: the instance's issuer at `{url}/api/actions`, found by
/// the job from its runner's `GITHUB_SERVER_URL`, Forgejo's claim set, and
/// a generic publisher on its immutable ids; every refusal a job meets.
#[tokio::test]
async fn a_forgejo_job_pushes_through_its_instance_issuer() {
    let issuer = provenix_tests::oidc::OidcIssuer::start_forgejo();
    let aud = "provenix-forgejo-test";
    let server = provenix_tests::TestServer::start_with(
        Backend::Sqlite,
        &format!("{}audience = \"{aud}\"\n", issuer.server_toml("forgejo")),
    );
    let admin = server.client();
    admin.ok(&["cache", "create", "main"]);
    admin.ok(&[
        "publisher",
        "add",
        "main",
        "--issuer",
        "forgejo",
        "--claim",
        "repository_id=3101",
        "--claim",
        "repository_owner_id=2101",
        "--claim",
        "ref=refs/heads/main",
    ]);
    let store = NixStore::new();
    let path = store.add_input_addressed("forgejo-app", &[("bin/app", b"forgejo\n")], &[]);
    let job = provenix_tests::server::Client::new();
    job.ok(&["login", "ci", &server.url]);
    let push = ["push", "main", &path, "--store", &store.root()];
    let env = |request_url: String, server_url: &str| {
        vec![
            ("ACTIONS_ID_TOKEN_REQUEST_URL", request_url),
            (
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                issuer.request_token.clone(),
            ),
            ("GITHUB_SERVER_URL", server_url.to_string()),
        ]
    };
    let refused = |overrides: Value, needle: &str| {
        let (ok, _, err) = run_ci(
            &job,
            &env(issuer.job_request_url(overrides), &issuer.base),
            &push,
        );
        assert!(!ok && err.contains(needle), "wanted {needle:?}: {err}");
    };
    // Another repository (a fork, or one that took a deleted one's name:
    // same name, new id), another ref, a token for another audience, an
    // expired one.
    refused(json!({"repository_id": "9999"}), "no-matching-publisher");
    refused(
        json!({"repository": "forge-org/forge-app", "repository_owner_id": "666"}),
        "no-matching-publisher",
    );
    refused(
        json!({"ref": "refs/heads/feature"}),
        "no-matching-publisher",
    );
    refused(json!({"aud": "someone-else"}), "wrong-audience");
    refused(
        json!({"exp": 1_000_000, "iat": 999_000, "nbf": 999_000}),
        "expired",
    );
    // Not knowing the forge, the job asks for GitHub's issuer, which this
    // server does not trust.
    let (ok, _, err) = run_ci(
        &job,
        &env(issuer.request_url.clone(), "https://github.com"),
        &push,
    );
    assert!(
        !ok && err.contains("accepts no tokens from issuer \"github\""),
        "{err}"
    );
    assert!(
        !admin.run(&["provenance", "main", &path]).0,
        "a refused job stored nothing"
    );

    let (ok, _, err) = run_ci(&job, &env(issuer.request_url.clone(), &issuer.base), &push);
    assert!(ok, "{err}");
    let prov: Value =
        serde_json::from_str(&admin.ok(&["provenance", "main", &path, "--json"])).unwrap();
    let upload = &prov["uploads"][0];
    let text = upload.to_string();
    for want in [
        "forge-org/forge-app",
        "repo:forge-org/forge-app:ref:refs/heads/main",
        "771",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    assert_eq!(upload["key"]["issuer"], issuer.issuer, "{text}");
}
