//! Signed uploads and provenance, end to end: a CI job pushes through the
//! OIDC exchange, the real Nix client pulls, and the audit answers who built
//! it; refused uploads leave no record; divergences are kept; the in-toto
//! export verifies offline and breaks on any change.

use provenix_provenance::NarHash;
use provenix_tests::ci::{run_ci, world, world_on, World, REPO_ID};
use provenix_tests::http::{assert_refused, new_key, sample_nar, upload_info, Http};
use provenix_tests::{backend_tests, host_of, Backend, NixStore};
use serde_json::{json, Value};

fn audit_json(w: &World, args: &[&str]) -> Value {
    let admin = w.server.client();
    let out = admin.ok(&[&["audit", "main", "--json"][..], args].concat());
    serde_json::from_str(&out).unwrap()
}

fn items(v: &Value) -> &Vec<Value> {
    v["items"].as_array().unwrap()
}

/// Pushes two paths from the simulated Actions job; returns (store, lib, app).
fn ci_push(w: &World) -> (NixStore, String, String) {
    let (ci, env) = w.ci_client();
    let src = NixStore::new();
    let lib = src.add_input_addressed("audited-lib", &[("lib/a.so", b"lib")], &[]);
    let text = format!("uses {lib}\n");
    let app = src.add_input_addressed("audited-app", &[("bin/app", text.as_bytes())], &[&lib]);
    let (ok, _, err) = run_ci(&ci, &env, &["push", "main", &app, "--store", &src.root()]);
    assert!(ok, "{err}");
    (src, lib, app)
}

backend_tests! {
    fn a_ci_upload_is_audited_and_pulled_by_nix => audited_and_pulled;
}

fn audited_and_pulled(backend: Backend) {
    let w = world_on(backend, "", None);
    let (src, lib, app) = ci_push(&w);

    // Nix pulls it, verifying the cache key's signature on the narinfo.
    let admin = w.server.client();
    let key = admin.public_key("main");
    let dst = NixStore::new();
    let (ok, err) = dst.copy_from(
        &format!("{}/main", w.server.url),
        &app,
        &[&key],
        Some((&host_of(&w.server.url), &w.server.root_token)),
    );
    assert!(ok, "{err}");

    // The audit names repository and id, workflow, commit, ref and run.
    for filter in [
        vec!["--repository", "octo-org/octo-repo"],
        vec!["--repository", REPO_ID],
        vec!["--workflow", "build.yml"],
        vec!["--run-id", "5386839201"],
    ] {
        let v = audit_json(&w, &filter);
        assert_eq!(items(&v).len(), 2, "{filter:?}: {v}");
    }
    for filter in [
        vec!["--repository", "octo-org/other"],
        vec!["--workflow", "release.yml"],
        vec!["--run-id", "1"],
    ] {
        assert!(items(&audit_json(&w, &filter)).is_empty(), "{filter:?}");
    }
    let out = admin.ok(&["provenance", "main", &app, "--json"]);
    let p: Value = serde_json::from_str(&out).unwrap();
    let rec = &p["uploads"][0];
    assert_eq!(rec["store_path"], app.as_str());
    assert_eq!(rec["outcome"], "uploaded");
    let claims = &rec["key"]["claims"];
    assert_eq!(claims["repository"], "octo-org/octo-repo");
    assert_eq!(claims["repository_id"], REPO_ID);
    assert_eq!(
        claims["workflow_ref"],
        "octo-org/octo-repo/.github/workflows/build.yml@refs/heads/main"
    );
    assert_eq!(claims["sha"], "d6cd1e2bd19e03a81132a23b2025920577f84e37");
    assert_eq!(claims["ref"], "refs/heads/main");
    assert_eq!(claims["run_id"], "5386839201");
    assert!(rec["key"]["certificate"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert!(rec["statement"].as_str().unwrap().contains(&app));
    // The readable form says the same.
    let text = admin.ok(&["provenance", "main", &app]);
    assert!(text.contains("repository_id: 42000001"), "{text}");
    assert!(text.contains("run_id: 5386839201"), "{text}");

    // A person pushing the same closure adds a witness, not a replacement:
    // one closure statement vouching for both paths.
    let err = admin.ok_stderr(&["push", "main", &app, "--store", &src.root()]);
    assert!(err.contains("Nothing to push: 2 already cached"), "{err}");
    let p: Value =
        serde_json::from_str(&admin.ok(&["provenance", "main", &lib, "--json"])).unwrap();
    assert_eq!(p["uploads"].as_array().unwrap().len(), 1, "{p}");
    let closures = p["closures"].as_array().unwrap();
    assert_eq!(closures.len(), 1, "{p}");
    assert_eq!(closures[0]["key"]["subject"], "root");
    assert_eq!(closures[0]["key"]["kind"], "token");
    assert_eq!(closures[0]["paths"], 2);
    let listed = closures[0]["statement"].as_str().unwrap();
    assert!(listed.contains(&lib) && listed.contains(&app), "{listed}");
    let text = admin.ok(&["provenance", "main", &lib]);
    assert!(
        text.contains("Vouched by closure statement") && text.contains("Identity: root"),
        "{text}"
    );
    let v = audit_json(&w, &["--closures", "--subject", "root"]);
    assert_eq!(items(&v).len(), 1, "{v}");
    assert!(items(&audit_json(&w, &["--subject", "root"])).is_empty());

    // Keys issued: the job's and root's.
    let keys: Value = serde_json::from_str(&admin.ok(&["keys", "list", "main", "--json"])).unwrap();
    assert_eq!(items(&keys).len(), 2, "{keys}");
    let table = admin.ok(&["keys", "list", "main"]);
    assert!(
        table.contains("repo:octo-org/octo-repo:ref:refs/heads/main"),
        "{table}"
    );

    // Paging: one record per page, following the cursor.
    let first = audit_json(&w, &["--limit", "1"]);
    assert_eq!(items(&first).len(), 1);
    let cursor = first["next_cursor"]
        .as_i64()
        .expect("a next page")
        .to_string();
    let second = audit_json(&w, &["--limit", "1", "--cursor", &cursor]);
    assert_ne!(items(&first)[0]["id"], items(&second)[0]["id"]);

    // Destroying the cache takes its records with it (and nothing blocks it).
    admin.ok(&["cache", "destroy", "main", "--no-confirm"]);
    let err = admin.fails(&["audit", "main"]);
    assert!(err.contains("no-such-cache"), "{err}");
}

#[test]
fn the_in_toto_export_verifies_offline_and_breaks_on_any_change() {
    let w = world("");
    let (_src, _lib, app) = ci_push(&w);
    let admin = w.server.client();
    let key = admin.public_key("main");
    let envelope = admin.ok(&["provenance", "main", &app, "--in-toto"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("att.json");
    std::fs::write(&file, &envelope).unwrap();
    let f = file.to_str().unwrap();

    let out = admin.ok(&["verify-attestation", f, "--key", &key]);
    assert!(out.contains(&format!("Subject: {app}")), "{out}");
    assert!(out.contains("by repo:octo-org/octo-repo"), "{out}");

    // The statement is in-toto v1 with the NAR's sha256 as subject digest.
    let env: Value = serde_json::from_str(&envelope).unwrap();
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    let st: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    let p: Value =
        serde_json::from_str(&admin.ok(&["provenance", "main", &app, "--json"])).unwrap();
    let nar_hash = NarHash::parse(p["uploads"][0]["nar_hash"].as_str().unwrap()).unwrap();
    assert_eq!(st["subject"][0]["digest"]["sha256"], nar_hash.to_hex());
    assert_eq!(
        st["predicate"]["uploads"][0]["key"]["claims"]["repository_id"],
        REPO_ID
    );

    // One byte changed in the payload: refused.
    let mut tampered = payload.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    let mut env2 = env.clone();
    env2["payload"] = json!(base64::engine::general_purpose::STANDARD.encode(&tampered));
    std::fs::write(&file, env2.to_string()).unwrap();
    let err = admin.fails(&["verify-attestation", f, "--key", &key]);
    assert!(err.contains("no signature by key"), "{err}");
    // Another key: refused.
    let other = "main-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    std::fs::write(&file, &envelope).unwrap();
    let err = admin.fails(&["verify-attestation", f, "--key", other]);
    assert!(err.contains("no signature by key"), "{err}");
}

const PATH: &str = "/nix/store/7rjj86a15146cq1d3qy068lml7n8ykzm-witnessed";

async fn record_count(http: &Http, token: &str) -> usize {
    let (status, v, text) = http.get("/_api/v1/cache/main/uploads", Some(token)).await;
    assert_eq!(status, 200, "{text}");
    v["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn refused_uploads_leave_no_record_and_divergences_are_kept() {
    let w = world("");
    let root = w.server.root_token.clone();
    let http = &w.http;
    w.server.client().ok(&["cache", "create", "other"]);
    let key = http.key_for(&root, "main").await;
    let good = sample_nar("the real one");

    // Tampered statement, another key's signature, another cache's key, a
    // NAR whose hash differs from the statement.
    let mut tampered = key.sign(&upload_info("main", PATH, &good));
    tampered["nar_size"] = json!(good.len() + 1);
    assert_refused(
        &http.upload(None, &tampered, good.clone()).await,
        401,
        "invalid-signature",
        None,
    );
    let mut foreign: provenix_provenance::upload::UploadPathNarInfo =
        serde_json::from_value(upload_info("main", PATH, &good)).unwrap();
    foreign.sign(&key.key_id, &new_key());
    let a = http
        .upload(None, &serde_json::to_value(&foreign).unwrap(), good.clone())
        .await;
    assert_refused(&a, 401, "invalid-signature", None);
    let other_key = http.key_for(&root, "other").await;
    let a = http
        .signed_upload(&other_key, &upload_info("main", PATH, &good), &good)
        .await;
    assert_refused(&a, 403, "permission-denied", Some("another cache"));
    let mut lying = upload_info("main", PATH, &good);
    lying["nar_hash"] = json!(NarHash::of(b"something else").to_nix_string());
    let a = http.signed_upload(&key, &lying, &good).await;
    assert_refused(&a, 400, "nar-hash-mismatch", None);
    assert_eq!(record_count(http, &root).await, 0);
    let (status, _, _) = http
        .get(
            &format!("/_api/v1/cache/main/provenance/{}", &PATH[11..]),
            Some(&root),
        )
        .await;
    assert_eq!(status, 404);

    // The honest upload is recorded.
    let a = http
        .signed_upload(&key, &upload_info("main", PATH, &good), &good)
        .await;
    assert_eq!(a.0, 200, "{}", a.2);
    assert_eq!(record_count(http, &root).await, 1);

    // A CI job claims another NAR for the same path: 409, kept as a divergence
    // naming both identities.
    let c = w.claims();
    let token = w.issuer.sign(&c);
    let ci_key = new_key();
    let a = http
        .exchange_oidc(&token, &w.aud, c["jti"].as_str().unwrap(), "main", &ci_key)
        .await;
    assert_eq!(a.0, 200, "{}", a.2);
    let ci_key_id = a.1["key_id"].as_str().unwrap().to_string();
    let evil = sample_nar("a different one");
    let mut claim: provenix_provenance::upload::UploadPathNarInfo =
        serde_json::from_value(upload_info("main", PATH, &evil)).unwrap();
    claim.sign(&ci_key_id, &ci_key);
    let a = http
        .upload(None, &serde_json::to_value(&claim).unwrap(), evil)
        .await;
    assert_refused(&a, 409, "nar-hash-conflict", Some("already in this cache"));
    assert_eq!(record_count(http, &root).await, 1);
    let (status, d, text) = http
        .get("/_api/v1/cache/main/divergences", Some(&root))
        .await;
    assert_eq!(status, 200, "{text}");
    let d = &d["items"][0];
    assert_eq!(d["store_path"], PATH);
    assert_eq!(d["existing_nar_hash"], NarHash::of(&good).to_nix_string());
    assert_eq!(
        d["nar_hash"],
        NarHash::of(&sample_nar("a different one")).to_nix_string()
    );
    assert_eq!(d["key"]["claims"]["repository_id"], REPO_ID);
    assert_eq!(d["existing"][0]["key"]["subject"], "root");
    let out = w.server.client().ok(&["audit", "main", "--divergences"]);
    assert!(out.contains("DIVERGENCE"), "{out}");
}

#[tokio::test]
async fn an_expired_key_leaves_no_record() {
    let w = world("[signing-keys]\nlifetime = \"1s\"\n");
    let root = w.server.root_token.clone();
    let key = w.http.key_for(&root, "main").await;
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let good = sample_nar("late");
    let a = w
        .http
        .signed_upload(&key, &upload_info("main", PATH, &good), &good)
        .await;
    assert_refused(&a, 401, "key-expired", None);
    assert_eq!(record_count(&w.http, &root).await, 0);
}

#[tokio::test]
async fn auditing_needs_the_audit_permission() {
    let w = world("");
    let pusher = w.server.push_token("p", "main");
    let err = w
        .server
        .client_with_token(&pusher)
        .fails(&["audit", "main"]);
    assert!(
        err.contains("permission-denied") && err.contains("--audit"),
        "{err}"
    );
    let err = w
        .server
        .client_with_token(&pusher)
        .fails(&["keys", "list", "main"]);
    assert!(err.contains("permission-denied"), "{err}");
    let auditor = w
        .server
        .make_token(&["--sub", "a", "--validity", "1h", "--audit", "main"]);
    let out = w.server.client_with_token(&auditor).ok(&["audit", "main"]);
    assert!(out.contains("OUTCOME"), "{out}");
    // A public cache's contents are public; who pushed them is not.
    w.server
        .client()
        .ok(&["cache", "configure", "main", "--public"]);
    let (status, body, _) = w.http.get("/_api/v1/cache/main/uploads", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("permission-denied"))
    );
}
