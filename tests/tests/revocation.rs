//! Revocation, end to end: the real Nix client stops substituting paths tied
//! only to a revoked key, other paths are untouched, history stays, a clean
//! re-upload works, and every server process sees it at once.

use provenix_provenance::NarHash;
use provenix_tests::ci::{run_ci, world, world_on, World};
use provenix_tests::http::{assert_refused, sample_nar, upload_info, Http};
use provenix_tests::{host_of, Backend, Client, NixStore};
use serde_json::{json, Value};

fn revoker(w: &World) -> Client {
    let t = w.server.make_token(&[
        "--sub",
        "security",
        "--validity",
        "1h",
        "--revoke",
        "*",
        "--audit",
        "*",
        "--pull",
        "*",
    ]);
    w.server.client_with_token(&t)
}

fn pusher(w: &World, name: &str) -> Client {
    let t = w.server.push_token(name, "main");
    w.server.client_with_token(&t)
}

fn key_of(w: &World, subject: &str) -> String {
    let out = revoker(w).ok(&["keys", "list", "main", "--subject", subject, "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"][0]["key_id"].as_str().unwrap().to_string()
}

/// The `store_path` of each item of a JSON list.
fn store_paths(items: &Value) -> Vec<&str> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["store_path"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn revoking_a_key_stops_only_the_paths_it_alone_vouched_for() {
    let w = world("");
    let root = w.server.root_token.clone();
    let src = NixStore::new();
    let a = src.add_input_addressed("only-alice", &[("a", b"alice's build")], &[]);
    let b = src.add_input_addressed("only-bob", &[("b", b"bob's build")], &[]);
    let both = src.add_input_addressed("both-built", &[("s", b"reproducible")], &[]);
    let (alice, bob) = (pusher(&w, "alice"), pusher(&w, "bob"));
    // One push, one key for both paths.
    alice.ok(&["push", "main", &a, &both, "--store", &src.root()]);
    // Bob's push records him for `both` too (a witness), and uploads b.
    bob.ok(&["push", "main", &b, &both, "--store", &src.root()]);
    let k1 = key_of(&w, "alice");
    let admin = w.server.client();
    let cache_key = admin.public_key("main");
    let url = format!("{}/main", w.server.url);
    let netrc = (host_of(&w.server.url), root.clone());
    let a_narinfo = format!("/main/{}.narinfo", &a[11..43]);
    let narinfo = w.http.get(&a_narinfo, Some(&root)).await;
    let url_line = narinfo.2.lines().find(|l| l.starts_with("URL: ")).unwrap();
    let a_nar = format!("/main/{}", &url_line[5..]);

    // A user without the revoke permission is refused, and nothing changes.
    let err = alice.fails(&["revoke", "--key", &k1, "--reason", "mine"]);
    assert!(
        err.contains("permission-denied") && err.contains("--revoke"),
        "{err}"
    );

    // A dry run lists the key and the path that would go, and changes nothing.
    let sec = revoker(&w);
    let out = sec.ok(&[
        "revoke",
        "--key",
        &k1,
        "--reason",
        "laptop stolen",
        "--dry-run",
        "--json",
    ]);
    let dry: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(dry["keys"], json!([k1]));
    let paths = store_paths(&dry["paths"]);
    assert_eq!(paths, vec![a.as_str()]);
    assert_eq!(w.http.get(&a_narinfo, Some(&root)).await.0, 200);
    let keys = sec.ok(&["keys", "list", "main", "--subject", "alice"]);
    assert!(
        keys.contains("valid") && !keys.contains("revoked"),
        "{keys}"
    );

    // Revoke K1.
    let out = sec.ok(&["revoke", "--key", &k1, "--reason", "laptop stolen"]);
    assert!(out.contains("Revoked 1 keys") && out.contains(&a), "{out}");

    // A: narinfo and NAR 404, Nix cannot substitute it.
    assert_eq!(w.http.get(&a_narinfo, Some(&root)).await.0, 404);
    assert_eq!(w.http.get(&a_nar, Some(&root)).await.0, 404);
    let dst = NixStore::new();
    let (ok, _) = dst.copy_from(&url, &a, &[&cache_key], Some((&netrc.0, &netrc.1)));
    assert!(!ok, "a revoked path was substituted");
    // B (bob only) and `both` (bob vouched too) still substitute.
    for p in [&b, &both] {
        let (ok, err) = dst.copy_from(&url, p, &[&cache_key], Some((&netrc.0, &netrc.1)));
        assert!(ok, "{p}: {err}");
    }

    // The revoked key cannot upload, even within its lifetime.
    let http = Http::new(&w.server.url);
    let (_, keys_page, _) = http
        .get("/_api/v1/cache/main/keys?subject=alice", Some(&root))
        .await;
    assert_eq!(keys_page["items"][0]["status"], "revoked");

    // History stays, marked with time, actor and reason.
    let prov: Value = serde_json::from_str(&sec.ok(&["provenance", "main", &a, "--json"])).unwrap();
    let rev = &prov["uploads"][0]["key"]["revocation"];
    assert_eq!(rev["actor"], "security");
    assert_eq!(rev["reason"], "laptop stolen");
    let text = sec.ok(&["provenance", "main", &a]);
    assert!(
        text.contains("REVOKED") && text.contains("laptop stolen"),
        "{text}"
    );

    // check-store finds the revoked path in a store that substituted it earlier.
    let err = sec.fails(&["check-store", "main", "--store", &src.root()]);
    assert!(
        err.contains("1 path(s) in the local store were revoked"),
        "{err}"
    );
    let (ok, out, _) = sec.run(&["check-store", "main", "--store", &src.root()]);
    assert!(!ok && out.trim() == a, "{out}");
    let clean = NixStore::new();
    sec.ok(&["check-store", "main", "--store", &clean.root()]);

    // A clean re-upload under a valid key makes it servable again.
    alice.ok(&["push", "main", &a, "--store", &src.root()]);
    let (ok, err) = NixStore::new().copy_from(&url, &a, &[&cache_key], Some((&netrc.0, &netrc.1)));
    assert!(ok, "{err}");
}

#[tokio::test]
async fn one_upload_record_can_be_revoked_and_the_path_reuploaded_with_another_nar() {
    let w = world("");
    let root = w.server.root_token.clone();
    let key = w.http.key_for(&root, "main").await;
    let path = "/nix/store/7rjj86a15146cq1d3qy068lml7n8ykzm-tampered";
    let info = |nar: &[u8]| upload_info("main", path, nar);
    let provenance = format!("/_api/v1/cache/main/provenance/{}", &path[11..]);
    let narinfo = format!("/main/{}.narinfo", &path[11..43]);
    let bad = sample_nar("backdoored");
    assert_eq!(w.http.signed_upload(&key, &info(&bad), &bad).await.0, 200);
    let prov = w.http.get(&provenance, Some(&root)).await;
    let upload_id = prov.1["uploads"][0]["id"].as_i64().unwrap();
    let sec = revoker(&w);
    let out = sec.ok(&[
        "revoke",
        "--cache",
        "main",
        "--upload",
        &upload_id.to_string(),
        "--reason",
        "backdoor",
    ]);
    assert!(
        out.contains("1 upload records") && out.contains(path),
        "{out}"
    );
    assert_eq!(w.http.get(&narinfo, Some(&root)).await.0, 404);
    // The key itself is not revoked: it uploads the clean NAR (another hash, no 409).
    let good = sample_nar("clean");
    let a = w.http.signed_upload(&key, &info(&good), &good).await;
    assert_eq!(a.0, 200, "{}", a.2);
    let (status, _, text) = w.http.get(&narinfo, Some(&root)).await;
    assert_eq!(status, 200);
    assert!(text.contains(&NarHash::of(&good).to_nix_string()), "{text}");
    // The revoked record stays in the history, marked.
    let prov = w.http.get(&provenance, Some(&root)).await;
    assert_eq!(prov.1["uploads"][0]["revocation"]["reason"], "backdoor");
    assert!(prov.1["uploads"][1]["revocation"].is_null());
    // Bad requests: no reason, no selector.
    let err = sec.fails(&["revoke", "--key", "x", "--reason", " "]);
    assert!(err.contains("--reason"), "{err}");
    let a = w
        .http
        .post_json(
            "/_api/v1/revoke",
            Some(&root),
            &json!({"reason": "x", "key": "y"}),
        )
        .await;
    assert_refused(&a, 403, "permission-denied", Some("--revoke"));
}

#[tokio::test]
async fn a_repository_selector_revokes_every_run() {
    let w = world("");
    let src = NixStore::new();
    let (ci, env) = w.ci_client();
    let mut paths = Vec::new();
    for run in ["101", "102"] {
        w.issuer.set_claims(json!({"run_id": run}));
        let p = src.add_input_addressed(&format!("run-{run}"), &[("x", run.as_bytes())], &[]);
        let (ok, _, err) = run_ci(&ci, &env, &["push", "main", &p, "--store", &src.root()]);
        assert!(ok, "{err}");
        paths.push(p);
    }
    let kept = src.add_input_addressed("by-a-person", &[("y", b"y")], &[]);
    pusher(&w, "carol").ok(&["push", "main", &kept, "--store", &src.root()]);
    let sec = revoker(&w);
    let out = sec.ok(&[
        "revoke",
        "--repository",
        "42000001",
        "--reason",
        "compromised CI",
        "--json",
    ]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["keys"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["paths"].as_array().unwrap().len(), 2, "{r}");
    let audit: Value = serde_json::from_str(&sec.ok(&[
        "audit",
        "main",
        "--repository",
        "octo-org/octo-repo",
        "--json",
    ]))
    .unwrap();
    for rec in audit["items"].as_array().unwrap() {
        assert_eq!(rec["key"]["status"], "revoked");
    }
    let admin = w.server.client();
    let key = admin.public_key("main");
    let netrc = (host_of(&w.server.url), w.server.root_token.clone());
    let url = format!("{}/main", w.server.url);
    for p in &paths {
        assert!(
            !NixStore::new()
                .copy_from(&url, p, &[&key], Some((&netrc.0, &netrc.1)))
                .0
        );
    }
    assert!(
        NixStore::new()
            .copy_from(&url, &kept, &[&key], Some((&netrc.0, &netrc.1)))
            .0
    );
    // The feed lists both, in order.
    let feed = Http::new(&w.server.url);
    let (_, v, _) = feed
        .get(
            "/_api/v1/cache/main/revoked-paths",
            Some(&w.server.root_token),
        )
        .await;
    let listed = store_paths(&v["items"]);
    assert_eq!(listed, paths.iter().map(String::as_str).collect::<Vec<_>>());
}

/// Two server processes on one PostgreSQL: a revocation through one is
/// answered by the other at once (no in-process cache).
#[tokio::test]
async fn another_replica_answers_404_at_once() {
    let w = world_on(Backend::Postgres, "", None);
    let root = w.server.root_token.clone();
    let (child, replica_url) = provenix_tests::server::spawn_server(
        &w.server.config_path,
        w.server.dir.path(),
        &["--listen", "127.0.0.1:0"],
    );
    let mut child = child;
    let replica = Http::new(&replica_url);
    let key = w.http.key_for(&root, "main").await;
    let nar = sample_nar("replicated");
    let path = "/nix/store/7rjj86a15146cq1d3qy068lml7n8ykzm-replicated";
    let info = upload_info("main", path, &nar);
    assert_eq!(w.http.signed_upload(&key, &info, &nar).await.0, 200);
    let narinfo = format!("/main/{}.narinfo", &path[11..43]);
    assert_eq!(replica.get(&narinfo, Some(&root)).await.0, 200);
    let sec_token = w
        .server
        .make_token(&["--sub", "sec", "--validity", "1h", "--revoke", "*"]);
    let a = w
        .http
        .post_json(
            "/_api/v1/revoke",
            Some(&sec_token),
            &json!({"key": key.key_id, "reason": "test"}),
        )
        .await;
    assert_eq!(a.0, 200, "{}", a.2);
    let after = replica.get(&narinfo, Some(&root)).await.0;
    // The revoked key cannot upload any more, within its 15 minutes, on either process.
    let nar2 = sample_nar("after revocation");
    let path2 = "/nix/store/8rjj86a15146cq1d3qy068lml7n8ykzm-late";
    let info2 = upload_info("main", path2, &nar2);
    let refused = replica.signed_upload(&key, &info2, &nar2).await;
    let refused_too = w.http.signed_upload(&key, &info2, &nar2).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(after, 404);
    assert_refused(&refused, 401, "key-revoked", Some("revoked"));
    assert_refused(&refused_too, 401, "key-revoked", Some("revoked"));
}

/// Issue 17, item 8: the in-toto export of a path whose every record is
/// revoked says so inside the signed predicate, with the export time, and
/// `provenix verify-attestation` reports both and fails; a path re-uploaded
/// clean after a revoked record attests the NAR the cache now serves.
#[tokio::test]
async fn attestations_of_revoked_paths_say_so() {
    let w = world("");
    let root = w.server.root_token.clone();
    let key = w.http.key_for(&root, "main").await;
    let path = "/nix/store/7rjj86a15146cq1d3qy068lml7n8ykzm-attested";
    let bad = sample_nar("backdoored");
    let a = w
        .http
        .signed_upload(&key, &upload_info("main", path, &bad), &bad)
        .await;
    assert_eq!(a.0, 200, "{}", a.2);
    let sec = revoker(&w);
    let admin = w.server.client();
    let cache_key = admin.public_key("main");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("att.json");
    let f = file.to_str().unwrap();
    let export = |file: &std::path::Path| {
        std::fs::write(file, admin.ok(&["provenance", "main", path, "--in-toto"])).unwrap();
    };
    let predicate = |file: &std::path::Path| -> Value {
        use base64::Engine;
        let env: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let payload = base64::engine::general_purpose::STANDARD
            .decode(env["payload"].as_str().unwrap())
            .unwrap();
        serde_json::from_slice::<Value>(&payload).unwrap()["predicate"].clone()
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };

    export(&file);
    let p = predicate(&file);
    assert_eq!(p["revoked"], false);
    assert!(
        (now() - p["exportedAt"].as_i64().unwrap()).abs() < 60,
        "{p}"
    );
    let out = admin.ok(&["verify-attestation", f, "--key", &cache_key]);
    assert!(out.contains("Exported: "), "{out}");
    assert!(!out.contains("revoked"), "{out}");

    let upload_id = w
        .http
        .get(
            &format!("/_api/v1/cache/main/provenance/{}", &path[11..]),
            Some(&root),
        )
        .await
        .1["uploads"][0]["id"]
        .as_i64()
        .unwrap();
    sec.ok(&[
        "revoke",
        "--cache",
        "main",
        "--upload",
        &upload_id.to_string(),
        "--reason",
        "backdoor",
    ]);
    export(&file);
    let p = predicate(&file);
    assert_eq!(p["revoked"], true, "{p}");
    let (ok, out, err) = admin.run(&["verify-attestation", f, "--key", &cache_key]);
    assert!(!ok, "a revoked path verified cleanly: {out}");
    assert!(out.contains("Verified: signed by main-1"), "{out}");
    assert!(out.contains("Exported: "), "{out}");
    assert!(
        out.contains("(revoked ") && out.contains("backdoor"),
        "{out}"
    );
    assert!(out.contains("Revoked: every upload record"), "{out}");
    assert!(
        err.contains("is revoked") && err.trim().lines().count() == 1,
        "{err}"
    );

    // Re-uploaded clean: the attestation's subject is the NAR served now.
    let upload_and_export = |name: &'static str| {
        let (w, key, export, predicate, file) = (&w, &key, &export, &predicate, &file);
        async move {
            let nar = sample_nar(name);
            let a = w
                .http
                .signed_upload(key, &upload_info("main", path, &nar), &nar)
                .await;
            assert_eq!(a.0, 200, "{}", a.2);
            export(file);
            (nar, predicate(file))
        }
    };
    let (good, p) = upload_and_export("clean").await;
    assert_eq!(p["revoked"], false, "{p}");
    assert_eq!(p["narHash"], NarHash::of(&good).to_nix_string(), "{p}");
    let out = admin.ok(&["verify-attestation", f, "--key", &cache_key]);
    assert!(out.contains(&NarHash::of(&good).to_hex()), "{out}");

    // Deleted (found by the outsider attack): not served, though no record
    // is revoked; then uploaded anew with a third NAR, which is attested.
    let deleted = w
        .http
        .delete(
            &format!("/_api/v1/cache/main/paths/{}", &path[11..43]),
            Some(&root),
        )
        .await;
    assert_eq!(deleted.0, 200, "{}", deleted.2);
    export(&file);
    let p = predicate(&file);
    assert_eq!(
        (p["served"].clone(), p["revoked"].clone()),
        (json!(false), json!(false)),
        "{p}"
    );
    let (ok, out, err) = admin.run(&["verify-attestation", f, "--key", &cache_key]);
    assert!(!ok && err.contains("no longer serves"), "{out}{err}");
    let (third, p) = upload_and_export("third").await;
    assert_eq!(p["served"], true, "{p}");
    assert_eq!(p["narHash"], NarHash::of(&third).to_nix_string(), "{p}");
}

provenix_tests::backend_tests! {
    fn a_push_vouching_for_a_closure_is_revoked_with_its_key => vouching_push_revoked;
}

/// Issue 18: a re-push vouches for a whole closure in one statement. Its
/// key's revocation keeps what another key uploaded; the last record's
/// revocation takes the closure, and the real Nix client stops getting it.
fn vouching_push_revoked(backend: Backend) {
    let w = world_on(backend, "", None);
    let src = NixStore::new();
    let mut parts = Vec::new();
    for i in 0..24 {
        let contents = format!("part {i}");
        parts.push(src.add_input_addressed(
            &format!("part-{i}"),
            &[("f", contents.as_bytes())],
            &[],
        ));
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let text = format!("uses {}\n", refs.join(" "));
    let top = src.add_input_addressed("whole", &[("bin/app", text.as_bytes())], &refs);
    let (alice, bob) = (pusher(&w, "alice"), pusher(&w, "bob"));
    alice.ok(&["push", "main", &top, "--store", &src.root()]);
    let err = bob.ok_stderr(&["push", "main", &top, "--store", &src.root()]);
    assert!(err.contains("Nothing to push: 25 already cached"), "{err}");
    let sec = revoker(&w);
    let prov: Value =
        serde_json::from_str(&sec.ok(&["provenance", "main", &parts[3], "--json"])).unwrap();
    assert_eq!(prov["closures"][0]["key"]["subject"], "bob", "{prov}");
    assert_eq!(prov["closures"][0]["paths"], 25, "{prov}");

    let url = format!("{}/main", w.server.url);
    let cache_key = w.server.client().public_key("main");
    let netrc = (host_of(&w.server.url), w.server.root_token.clone());
    let pulls = || {
        NixStore::new()
            .copy_from(&url, &top, &[&cache_key], Some((&netrc.0, &netrc.1)))
            .0
    };

    // Alice's key revoked: bob's statement vouches for all 25 as stored.
    let out = sec.ok(&[
        "revoke",
        "--key",
        &key_of(&w, "alice"),
        "--reason",
        "runner compromised",
        "--json",
    ]);
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert!(store_paths(&answer["paths"]).is_empty(), "{answer}");
    assert!(pulls(), "bob's statement no longer holds the closure");

    // Bob's too: the closure goes, each path with it.
    let out = sec.ok(&[
        "revoke",
        "--key",
        &key_of(&w, "bob"),
        "--reason",
        "same runner",
        "--json",
    ]);
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(store_paths(&answer["paths"]).len(), 25, "{answer}");
    assert!(!pulls(), "a revoked closure was substituted");
    let prov: Value =
        serde_json::from_str(&sec.ok(&["provenance", "main", &parts[3], "--json"])).unwrap();
    // The path is gone, so nothing vouches for it now; its statement stays.
    assert!(prov["closures"].as_array().unwrap().is_empty(), "{prov}");
    let listed: Value =
        serde_json::from_str(&sec.ok(&["audit", "main", "--closures", "--json"])).unwrap();
    assert_eq!(
        listed["items"][0]["key"]["revocation"]["reason"],
        "same runner"
    );
}

provenix_tests::backend_tests! {
    async fn closure_statements_are_refused_as_uploads_are => closure_refusals;
}

/// Issue 18's refusals against a real server: a closure statement that
/// vouches for a path with another NAR hash, one for another cache, one
/// replayed, and one signed by a revoked key record nothing.
async fn closure_refusals(backend: Backend) {
    use provenix_provenance::closure::{metadata_digest, ClosureStatement, VouchedPath};
    let server = provenix_tests::TestServer::start(backend);
    let admin = server.client();
    admin.ok(&["cache", "create", "main", "--public"]);
    admin.ok(&["cache", "create", "other", "--public"]);
    let http = Http::new(&server.url);
    let alice = http.key_for(&server.root_token, "main").await;
    let mut vouched = Vec::new();
    for (i, name) in ["lib", "app"].iter().enumerate() {
        let nar = sample_nar(format!("closure part {i}"));
        let path = format!("/nix/store/{}-{name}", ["a", "b"][i].repeat(32));
        let a = http
            .signed_upload(&alice, &upload_info("main", &path, &nar), &nar)
            .await;
        assert_eq!(a.0, 200, "{}", a.2);
        vouched.push(VouchedPath {
            store_path: path,
            nar_hash: NarHash::of(&nar),
            nar_size: nar.len() as u64,
            metadata: metadata_digest(&[], None, None),
        });
    }
    let bob = http
        .key_for(&server.push_token("bob", "main"), "main")
        .await;
    let carol = http
        .key_for(&server.push_token("carol", "other"), "other")
        .await;
    let statement =
        |cache: &str, paths: Vec<VouchedPath>, key: &provenix_tests::http::UploadKey| {
            let mut st = ClosureStatement {
                cache: cache.into(),
                paths,
                key_id: None,
                nonce: None,
                signature: None,
            };
            st.sign(&key.key_id, &key.key);
            serde_json::to_value(st).unwrap()
        };
    let send = |body: Value| {
        let http = &http;
        async move {
            http.post_json("/_api/v1/closure-statements", None, &body)
                .await
        }
    };
    let records = || async {
        let (_, page, _) = http
            .get(
                "/_api/v1/cache/main/closure-statements",
                Some(&server.root_token),
            )
            .await;
        page["items"].as_array().map_or(0, Vec::len)
    };

    let mut other_build = vouched.clone();
    other_build[1].nar_hash = NarHash::of(b"a build that differs");
    let a = send(statement("main", other_build, &bob)).await;
    assert_refused(&a, 409, "nar-hash-conflict", Some(&vouched[1].store_path));
    let a = send(statement("main", vouched.clone(), &carol)).await;
    assert_refused(&a, 403, "permission-denied", None);
    assert_eq!(records().await, 0);

    let once = statement("main", vouched.clone(), &bob);
    let a = send(once.clone()).await;
    assert_eq!((a.0, &a.1["vouched"]), (200, &json!(2)), "{}", a.2);
    assert_refused(&send(once).await, 409, "statement-replayed", None);
    assert_eq!(records().await, 1);

    let security = server.make_token(&["--sub", "security", "--validity", "1h", "--revoke", "*"]);
    server
        .client_with_token(&security)
        .ok(&["revoke", "--key", &bob.key_id, "--reason", "leaked"]);
    let a = send(statement("main", vouched.clone(), &bob)).await;
    assert_refused(&a, 401, "key-revoked", None);
    assert_eq!(records().await, 1);
}
