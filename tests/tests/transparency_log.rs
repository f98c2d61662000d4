//! The transparency log end to end (issue 19), with real servers: a CI
//! upload and a revocation through two replicas over PostgreSQL and S3
//! appear in the cache's log, read as any tlog-tiles client reads it (the
//! checkpoint verified with the key `cache info` publishes, the root
//! recomputed from the tiles, the entries decoded and the upload's
//! statement verified with the key the log itself recorded); and a server
//! killed between a commit and its integration loses nothing.

use provenix_provenance::tlog::checkpoint::{self, VerifiedCheckpoint};
use provenix_provenance::tlog::entry::Entry;
use provenix_provenance::tlog::tiles::{self, TilePath};
use provenix_provenance::tlog::Hash;
use provenix_tests::ci::{ADD_PUBLISHER, REPO_ID};
use provenix_tests::oidc::OidcIssuer;
use provenix_tests::{random_bytes, Backend, Client, NixStore, ObjectStorage, TestServer};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

async fn get(url: &str, token: &str) -> (u16, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("body").to_vec())
}

/// The log's origin and current verifier key, as `cache info` gives them.
async fn log_identity(base: &str, cache: &str, token: &str) -> (String, String) {
    let (status, body) = get(&format!("{base}/_api/v1/cache-config/{cache}"), token).await;
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let log = &info["transparency_log"];
    (
        log["origin"].as_str().expect("an origin").to_string(),
        log["verifier_keys"][0]["verifier_key"]
            .as_str()
            .expect("a verifier key")
            .to_string(),
    )
}

/// Waits (up to 10 s) for a checkpoint of at least `size` entries,
/// verified with the published key.
async fn checkpoint_of(base: &str, cache: &str, token: &str, size: u64) -> VerifiedCheckpoint {
    let (origin, vkey) = log_identity(base, cache, token).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(&format!("{base}/{cache}/tlog/checkpoint"), token).await;
        // A checkpoint made before a rotation carries only the old key
        // until the next one is signed: wait for it like for a small one.
        let verified = (status == 200).then(|| checkpoint::verify(&body, &vkey, &origin));
        let verified = match verified {
            Some(Ok(cp)) if cp.size >= size => return cp,
            other => other.map(|r| r.map(|cp| cp.size)),
        };
        assert!(
            Instant::now() < deadline,
            "no checkpoint of {size} entries verified by {vkey} within 10 s (last: {status} {verified:?} {})",
            String::from_utf8_lossy(&body)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The entries of a log under 256 entries, checked against `cp`: the
/// root recomputed from the level-0 tile must be the checkpoint's, and
/// each entry must hash to its leaf.
async fn entries_of(base: &str, cache: &str, token: &str, cp: &VerifiedCheckpoint) -> Vec<Entry> {
    assert!(cp.size > 0 && cp.size < 256);
    let width = cp.size as u32;
    let tile = TilePath::hash_tile(0, 0, width).path();
    let (status, leaves) = get(&format!("{base}/{cache}/tlog/{tile}"), token).await;
    assert_eq!(status, 200, "{tile}");
    let leaves: Vec<Hash> = leaves
        .chunks(32)
        .map(|c| Hash(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        mth(&leaves),
        cp.root,
        "the tiles give the checkpoint's root"
    );
    let bundle = TilePath::bundle(0, width).path();
    let (status, data) = get(&format!("{base}/{cache}/tlog/{bundle}"), token).await;
    assert_eq!(status, 200, "{bundle}");
    let raw = tiles::unbundle(&data).expect("a well-formed bundle");
    assert_eq!(raw.len(), leaves.len());
    raw.iter()
        .zip(&leaves)
        .map(|(e, leaf)| {
            assert_eq!(&provenix_provenance::tlog::tree::record_hash(e), leaf);
            Entry::decode(e).expect("a version 1 entry")
        })
        .collect()
}

/// RFC 6962's Merkle Tree Hash over leaf hashes.
fn mth(hs: &[Hash]) -> Hash {
    match hs.len() {
        1 => hs[0],
        n => {
            let k = n.next_power_of_two() / 2;
            let (l, r) = (mth(&hs[..k]), mth(&hs[k..]));
            Hash(Sha256::digest([&[1u8][..], &l.0, &r.0].concat()).into())
        }
    }
}

fn kinds(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.header.kind.as_str()).collect()
}

#[tokio::test]
async fn a_ci_upload_and_its_revocation_are_logged_across_two_replicas() {
    let issuer = OidcIssuer::start();
    let extra = format!(
        "{}audience = \"provenix-log-test\"\n",
        issuer.server_toml("github")
    );
    let server = TestServer::start_on(Backend::Postgres, ObjectStorage::S3, &extra);
    let b_dir = tempfile::tempdir().unwrap();
    let (mut replica_b, b_url) = provenix_tests::server::spawn_server(
        &server.config_path,
        b_dir.path(),
        &["--mode", "api-server", "--listen", "127.0.0.1:0"],
    );
    let admin_token = server.token_with(
        "admin",
        &["pull", "create-cache", "configure-cache", "revoke"],
    );
    let admin = server.client_with_token(&admin_token);
    admin.ok(&["cache", "create", "main"]);
    admin.ok(&ADD_PUBLISHER);
    let info = admin.ok(&["cache", "info", "main"]);
    assert!(info.contains("Transparency Log: "), "{info}");
    assert!(info.contains("Log Key: "), "{info}");

    // A CI job pushes through replica B.
    let store = NixStore::new();
    let path = store.add_input_addressed("logged", &[("blob", &random_bytes(5, 50_000))], &[]);
    let ci = Client::new();
    ci.ok(&["login", "ci", &b_url]);
    let job = issuer.job_request_url(json!({ "run_id": "777" }));
    let env = [
        ("ACTIONS_ID_TOKEN_REQUEST_URL", job.as_str()),
        (
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            issuer.request_token.as_str(),
        ),
    ];
    let (ok, _, err) = ci.run_with(&["push", "main", &path, "--store", &store.root()], &env);
    assert!(ok, "{err}");

    // Either replica serves the log; whichever integrated it.
    let cp = checkpoint_of(&b_url, "main", &admin_token, 3).await;
    let entries = entries_of(&server.url, "main", &admin_token, &cp).await;
    assert_eq!(kinds(&entries), ["ca-certificate", "upload-key", "upload"]);
    let (_, ca_pem) = get(&format!("{}/.well-known/provenix/ca.pem", server.url), "").await;
    assert_eq!(entries[0].body, ca_pem, "the server's CA, logged first");
    let key = &entries[1].header.asserted;
    assert_eq!(key["claims"]["run_id"], "777");
    assert_eq!(key["key_kind"], "oidc");
    assert_eq!(key["ca_index"], 0);
    assert!(entries[1].body.starts_with(b"-----BEGIN CERTIFICATE-----"));
    let upload = &entries[2];
    assert_eq!(upload.header.asserted["store_path"], path.as_str());
    let public_key =
        provenix_provenance::exchange::decode_public_key(key["public_key"].as_str().unwrap())
            .unwrap();
    provenix_provenance::exchange::verify(
        &public_key,
        &upload.body,
        upload.header.asserted["signature"].as_str().unwrap(),
    )
    .expect("the logged statement is the one the CI key signed");

    // Revoked through replica A: the revocation and the path it removed.
    admin.ok(&[
        "revoke",
        "--cache",
        "main",
        "--run-id",
        "777",
        "--reason",
        "compromised runner",
    ]);
    let later = checkpoint_of(&b_url, "main", &admin_token, 4).await;
    let entries = entries_of(&b_url, "main", &admin_token, &later).await;
    assert_eq!(
        kinds(&entries),
        ["ca-certificate", "upload-key", "upload", "revocation"]
    );
    let revocation = &entries[3];
    assert_eq!(revocation.header.asserted["reason"], "compromised runner");
    assert_eq!(revocation.header.asserted["removed_paths"], 1);
    assert_eq!(revocation.body, format!("{path}\n").into_bytes());
    // The old checkpoint is a prefix of the new one: its entries unchanged.
    assert_eq!(later.size, 4);
    let _ = replica_b.kill();
    let _ = replica_b.wait();
}

#[tokio::test]
async fn a_server_killed_between_commit_and_integration_loses_nothing() {
    // Integration far away: the push commits, nothing integrates it.
    let mut server =
        TestServer::start_with(Backend::Sqlite, "[log]\nintegrate-interval = \"1 hour\"\n");
    let client = server.client();
    client.ok(&["cache", "create", "main"]);
    let store = NixStore::new();
    let path = store.add_input_addressed("crash", &[("blob", &random_bytes(6, 10_000))], &[]);
    client.ok(&["push", "main", &path, "--store", &store.root()]);
    let (status, _) = get(
        &format!("{}/main/tlog/checkpoint", server.url),
        &server.root_token,
    )
    .await;
    assert_eq!(status, 404, "nothing integrated yet");

    server.kill9();
    let config = std::fs::read_to_string(&server.config_path).unwrap();
    std::fs::write(&server.config_path, config.replace("1 hour", "100ms")).unwrap();
    server.restart();
    let cp = checkpoint_of(&server.url, "main", &server.root_token, 3).await;
    let entries = entries_of(&server.url, "main", &server.root_token, &cp).await;
    assert_eq!(kinds(&entries), ["ca-certificate", "upload-key", "upload"]);
    assert_eq!(entries[2].header.asserted["store_path"], path.as_str());
}

/// The database file of a SQLite test server.
fn sqlite_file(server: &TestServer) -> std::path::PathBuf {
    server.dir.path().join("server.db")
}

fn sqlite(server: &TestServer, sql: &str) {
    let (ok, _, err) = provenix_tests::run(
        std::process::Command::new("sqlite3")
            .arg(sqlite_file(server))
            .arg(sql),
    );
    assert!(ok, "sqlite3: {err}");
}

/// What a dishonest operator would do: stop the server, change a record
/// (upload 1's outcome), drop the log so it is rebuilt from the changed
/// history with the same key, and start again.
fn rewrite_history(server: &mut TestServer) {
    server.kill9();
    sqlite(
        server,
        "DELETE FROM log_entries; DELETE FROM log_hashes; DELETE FROM log_heads;
         UPDATE uploads SET outcome = 'deduplicated' WHERE id = 1;",
    );
    server.restart();
}

#[tokio::test]
async fn provenix_verify_checks_a_path_against_the_log_and_catches_a_rewritten_one() {
    let mut server =
        TestServer::start_with(Backend::Sqlite, "[log]\nintegrate-interval = \"100ms\"\n");
    let token = server.token_with(
        "alice",
        &["pull", "push", "create-cache", "audit", "revoke"],
    );
    let alice = server.client_with_token(&token);
    alice.ok(&["cache", "create", "main"]);
    let store = NixStore::new();
    let first = store.add_input_addressed("first", &[("blob", &random_bytes(7, 20_000))], &[]);
    alice.ok(&["push", "main", &first, "--store", &store.root()]);
    checkpoint_of(&server.url, "main", &token, 3).await;

    let out = alice.ok(&["verify", "main", &first]);
    for line in [
        "ok    checkpoint of ",
        "ok    first checkpoint this client saw",
        "log entry 2, included in the checkpoint",
        "certified at log entry 1, before the upload",
        "statement signed by that key",
        "no later revocation in the log covers it",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    assert!(
        out.contains("its certificate was issued for that key by the CA logged at entry 0"),
        "{out}"
    );

    // Saved, the provenance verifies offline: its tlog-proofs against the
    // keys this client remembered, or against keys given by hand.
    let files = tempfile::tempdir().unwrap();
    let saved = files.path().join("first.json");
    std::fs::write(&saved, alice.ok(&["provenance", "main", &first, "--json"])).unwrap();
    let offline = ["verify", "--offline", saved.to_str().unwrap()];
    let out = alice.ok(&offline);
    for line in [
        "ok    checkpoint of ",
        "log entry 2, included in the checkpoint of 3 entries",
        "certified at log entry 1, before the upload",
        "its certificate was issued for that key by the CA logged at entry 0",
        "statement signed by that key",
        "note  revocations logged after the checkpoint of 3 entries",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    let stranger = Client::new();
    let (code, _, err) = stranger.status(&offline);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("give --log-key"), "{err}");
    let info: serde_json::Value =
        serde_json::from_str(&alice.ok(&["cache", "info", "main", "--json"])).unwrap();
    let log_key = info["transparency_log"]["verifier_keys"][0]["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    let ca = files.path().join("ca.pem");
    let (_, ca_pem) = get(
        &format!("{}/.well-known/provenix/ca.pem", server.url),
        &token,
    )
    .await;
    std::fs::write(&ca, ca_pem).unwrap();
    let by_hand = [
        "verify",
        "--offline",
        saved.to_str().unwrap(),
        "--log-key",
        &log_key,
        "--ca",
        ca.to_str().unwrap(),
    ];
    stranger.ok(&by_hand);
    // Another server's CA, a required witness that never cosigned, or a
    // record whose statement was edited: exit 3.
    let other = TestServer::start(Backend::Sqlite);
    let (_, other_ca) = get(&format!("{}/.well-known/provenix/ca.pem", other.url), "").await;
    std::fs::write(&ca, other_ca).unwrap();
    let (code, out, _) = stranger.status(&by_hand);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("the CA the log holds for the key (entry 0) is not the one given with --ca"),
        "{out}"
    );
    let witness = provenix_provenance::tlog::witness::Cosigner::new(
        "witness.example/w9",
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
    )
    .unwrap()
    .verifier_key();
    let (code, out, _) = alice.status(&[&offline[..], &["--witness", &witness]].concat());
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("0 of the 1 witness cosignatures required"),
        "{out}"
    );
    let mut edited: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    let statement = edited["uploads"][0]["statement"].as_str().unwrap();
    edited["uploads"][0]["statement"] = json!(statement.replace("first", "frist"));
    let edited = serde_json::to_string(&edited).unwrap();
    let tampered = files.path().join("tampered.json");
    std::fs::write(&tampered, edited).unwrap();
    let (code, out, _) = alice.status(&["verify", "--offline", tampered.to_str().unwrap()]);
    assert_eq!(code, 3, "{out}");
    // A bundle naming another uploader than its key's log entry certifies
    // (the attack review: the edited name was printed as verified).
    let mut renamed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    renamed["uploads"][0]["key"]["subject"] = json!("repo:acme/prod:ref:refs/heads/main");
    std::fs::write(&tampered, serde_json::to_string(&renamed).unwrap()).unwrap();
    let (code, out, _) = alice.status(&["verify", "--offline", tampered.to_str().unwrap()]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("the record names repo:acme/prod:ref:refs/heads/main")
            && out.contains("that entry certifies alice")
            && !out.contains("ok    upload #1: key"),
        "{out}"
    );
    // The in-toto export carries the same proofs.
    let exported = files.path().join("first.intoto.json");
    std::fs::write(
        &exported,
        alice.ok(&["provenance", "main", &first, "--in-toto"]),
    )
    .unwrap();
    alice.ok(&["verify", "--offline", exported.to_str().unwrap()]);

    let proof = alice.ok(&["log", "proof", "main", "2"]);
    assert!(proof.contains("Entry 2 of 3: upload"), "{proof}");
    assert!(
        proof.contains("Included in the checkpoint of 3 entries"),
        "{proof}"
    );
    assert!(alice
        .fails(&["log", "proof", "main", "9"])
        .contains("no entry 9"));

    // The log grows; the client checks the new checkpoint against the one
    // it remembered.
    let second = store.add_input_addressed("second", &[("blob", &random_bytes(8, 20_000))], &[]);
    alice.ok(&["push", "main", &second, "--store", &store.root()]);
    // Its key (each push exchanges for one) and its upload.
    checkpoint_of(&server.url, "main", &token, 5).await;
    let (ok, _, err) = alice.run(&["log", "checkpoint", "main"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("Consistent with the checkpoint of 3 entries"),
        "{err}"
    );
    let consistency = alice.ok(&["log", "consistency", "main", "3"]);
    assert!(
        consistency.contains("It is a prefix of the checkpoint of 5 entries"),
        "{consistency}"
    );

    // A revocation logged later: verify says so and fails.
    alice.ok(&[
        "revoke",
        "--cache",
        "main",
        "--subject",
        "alice",
        "--reason",
        "laptop stolen",
    ]);
    checkpoint_of(&server.url, "main", &token, 6).await;
    let (ok, out, _) = alice.run(&["verify", "main", &first]);
    assert!(!ok, "a revoked path does not verify:\n{out}");
    assert!(
        out.contains("REVOKED") && out.contains("laptop stolen"),
        "{out}"
    );

    // The operator rewrites history in the database: the log is rebuilt
    // from it, signed with the same key. The client, which remembered a
    // checkpoint, refuses the new one.
    rewrite_history(&mut server);
    let alice = {
        // Same config directory (the remembered checkpoint), new address.
        let (ok, _, err) = alice.run(&["login", "test", &server.url, &token]);
        assert!(ok, "{err}");
        alice
    };
    checkpoint_of(&server.url, "main", &token, 6).await;
    let refused = alice.fails(&["log", "checkpoint", "main"]);
    assert!(refused.contains("history was rewritten"), "{refused}");
    let (ok, out, err) = alice.run(&["verify", "main", &second]);
    assert!(!ok, "{out}");
    assert!(err.contains("history was rewritten"), "{err}");
}

/// A `provenixd --mode witness` of its own, on `port`, following `logs`
/// (origin, verifier key).
struct WitnessProcess {
    child: std::process::Child,
    config: std::path::PathBuf,
    port: u16,
}

impl WitnessProcess {
    fn start(dir: &std::path::Path, port: u16, seed: [u8; 32], logs: &[(String, String)]) -> Self {
        std::fs::write(dir.join("key"), hex::encode(seed)).unwrap();
        let mut config = format!(
            "listen = \"127.0.0.1:{port}\"\nname = \"witness.example/w1\"\nkey-file = \"{}\"\nstate-dir = \"{}\"\n",
            dir.join("key").display(),
            dir.join("state").display()
        );
        for (origin, vkey) in logs {
            config.push_str(&format!(
                "[[logs]]\norigin = \"{origin}\"\nverifier-key = \"{vkey}\"\n"
            ));
        }
        let path = dir.join("witness.toml");
        std::fs::write(&path, config).unwrap();
        let mut w = WitnessProcess {
            child: std::process::Command::new("true").spawn().unwrap(),
            config: path,
            port,
        };
        w.restart();
        w
    }

    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut cmd = std::process::Command::new(provenix_tests::bin("provenixd"));
        cmd.args(["--mode", "witness", "-f"]).arg(&self.config);
        let started =
            provenix_tests::server::start_listening(&mut cmd).expect("the witness starts");
        assert!(started.url.ends_with(&format!(":{}", self.port)));
        self.child = started.child;
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn checkpoints_are_published_once_a_witness_cosigns_and_a_rewritten_log_is_not() {
    use provenix_provenance::tlog::witness::{count_cosignatures, Cosigner};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let seed = [21u8; 32];
    let witness_key = Cosigner::new(
        "witness.example/w1",
        ed25519_dalek::SigningKey::from_bytes(&seed),
    )
    .unwrap()
    .verifier_key();
    let mut server = TestServer::start_with(
        Backend::Sqlite,
        &format!(
            "[log]\nintegrate-interval = \"100ms\"\n[[log.witnesses]]\nname = \"witness.example/w1\"\nurl = \"http://127.0.0.1:{port}\"\nverifier-key = \"{witness_key}\"\n"
        ),
    );
    let token = server.token_with("alice", &["pull", "push", "create-cache", "audit"]);
    let alice = server.client_with_token(&token);
    alice.ok(&["cache", "create", "main"]);
    let store = NixStore::new();
    let first = store.add_input_addressed("w-first", &[("blob", &random_bytes(9, 9_000))], &[]);
    // The witness is down: the push is not held up, nothing is published.
    alice.ok(&["push", "main", &first, "--store", &store.root()]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, _) = get(&format!("{}/main/tlog/checkpoint", server.url), &token).await;
    assert_eq!(status, 404, "not published without the witness");
    let (_, metrics) = get(&format!("{}/metrics", server.url), &token).await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("provenix_log_unpublished_entries 3"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("unpublished"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The witness comes up, following this cache's log.
    let (origin, log_key) = log_identity(&server.url, "main", &token).await;
    let wdir = tempfile::tempdir().unwrap();
    let mut witness = WitnessProcess::start(wdir.path(), port, seed, &[(origin.clone(), log_key)]);
    let cp = checkpoint_of(&server.url, "main", &token, 3).await;
    assert_eq!(
        count_cosignatures(&cp.note, std::slice::from_ref(&witness_key)).unwrap(),
        1
    );
    let out = alice.ok(&["verify", "main", &first]);
    assert!(
        out.contains("cosigned by 1 of 1 witnesses (quorum 1)"),
        "{out}"
    );

    // Growth is cosigned with a consistency proof, across a witness restart.
    witness.restart();
    let second = store.add_input_addressed("w-second", &[("blob", &random_bytes(10, 9_000))], &[]);
    alice.ok(&["push", "main", &second, "--store", &store.root()]);
    let later = checkpoint_of(&server.url, "main", &token, 5).await;
    assert_eq!(
        count_cosignatures(&later.note, std::slice::from_ref(&witness_key)).unwrap(),
        1
    );

    // A reader may require witnesses of its own choosing on every log
    // command: one that never cosigned fails the read, the real one passes.
    let stranger = Cosigner::new(
        "witness.example/stranger",
        ed25519_dalek::SigningKey::from_bytes(&[8; 32]),
    )
    .unwrap()
    .verifier_key();
    for command in [
        &["log", "checkpoint", "main"][..],
        &["log", "proof", "main", "1"],
        &["log", "consistency", "main", "1"],
        &["log", "monitor", "main", "--identity", "*"],
    ] {
        let err = alice.fails(&[command, &["--witness", &stranger]].concat());
        assert!(
            err.contains("has 0 of the 1 witness cosignatures it needs"),
            "{command:?}: {err}"
        );
        let out = alice.ok(&[command, &["--witness", &witness_key]].concat());
        assert!(!out.is_empty(), "{command:?}");
    }

    // History rewritten in the database: the witness refuses the new tree,
    // so it is never published.
    rewrite_history(&mut server);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = get(&format!("{}/main/tlog/checkpoint", server.url), &token).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let log = server.log();
    assert!(
        log.contains("waits for witnesses: 0 of 1 cosigned") && log.contains("422"),
        "{log}"
    );
}

#[tokio::test]
async fn log_monitor_reports_entries_by_identity_and_catches_a_rewritten_log() {
    let mut world = provenix_tests::ci::world("[log]\nintegrate-interval = \"100ms\"\n");
    let root = world.server.root_token.clone();
    // A CI job of the watched repository pushes, and so does alice from
    // her machine.
    let store = NixStore::new();
    let by_ci = store.add_input_addressed("by-ci", &[("blob", &random_bytes(11, 9_000))], &[]);
    let by_alice =
        store.add_input_addressed("by-alice", &[("blob", &random_bytes(12, 9_000))], &[]);
    let (ci, env) = world.ci_client();
    let (ok, _, err) = provenix_tests::ci::run_ci(
        &ci,
        &env,
        &["push", "main", &by_ci, "--store", &store.root()],
    );
    assert!(ok, "{err}");
    let alice_token = world.server.token_with("alice", &["pull", "push"]);
    let alice = world.server.client_with_token(&alice_token);
    alice.ok(&["push", "main", &by_alice, "--store", &store.root()]);
    checkpoint_of(&world.server.url, "main", &root, 5).await;

    let auditor = world.server.client();
    let watched = [
        "log",
        "monitor",
        "main",
        "--repository",
        "octo-org/octo-repo",
    ];
    let (code, out, err) = auditor.status(&watched);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("1 ") && lines[0].contains("upload-key key "),
        "{out}"
    );
    assert!(lines[0].contains("[repo:octo-org/octo-repo:"), "{out}");
    assert!(
        lines[1].starts_with("2 ") && lines[1].contains(&by_ci),
        "{out}"
    );
    assert!(!out.contains(&by_alice), "{out}");
    assert!(err.contains("Read entries 0 to 5"), "{err}");
    // Run again: nothing new, nothing reported.
    let (code, out, err) = auditor.status(&watched);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("Read entries 5 to 5"), "{err}");

    // Everyone else's entries, as JSON lines, with their own state: exit 2.
    let state = auditor.config_home().join("unexpected.json");
    let unexpected = [
        "log",
        "monitor",
        "main",
        "--repository",
        REPO_ID,
        "--unexpected",
        "--json",
        "--state",
        state.to_str().unwrap(),
    ];
    let (code, out, err) = auditor.status(&unexpected);
    assert_eq!(code, 2, "{out}{err}");
    let reports: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(reports.len(), 2, "{out}");
    assert_eq!(reports[0]["kind"], "upload-key");
    assert_eq!(reports[0]["identity"]["subject"], "alice");
    assert_eq!(reports[1]["kind"], "upload");
    assert_eq!(reports[1]["store_path"], by_alice.as_str());
    assert_eq!(reports[1]["expected"], false);
    assert!(err.contains("2 entries of identities not watched"), "{err}");
    // Nothing new since: a cron job stays quiet.
    assert_eq!(auditor.status(&unexpected).0, 0);

    // A revocation of alice is reported to whoever watches her.
    let revoker = world.server.token_with("admin", &["pull", "revoke"]);
    world.server.client_with_token(&revoker).ok(&[
        "revoke",
        "--cache",
        "main",
        "--subject",
        "alice",
        "--reason",
        "laptop stolen",
    ]);
    checkpoint_of(&world.server.url, "main", &root, 6).await;
    let (code, out, err) = auditor.status(&[
        "log",
        "monitor",
        "main",
        "--identity",
        "ali*",
        "--state",
        auditor.config_home().join("alice.json").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("revocation") && out.contains("laptop stolen"),
        "{out}"
    );
    assert!(out.contains(&by_alice) && !out.contains(&by_ci), "{out}");

    // An entry edited where the server keeps it: its bundle no longer
    // hashes to the tree's leaf. A monitor reading it anew from a server
    // that has not read it before (restarted: a server keeps the tiles it
    // served in memory) exits 3, and so does verify.
    sqlite(
        &world.server,
        "UPDATE log_entries SET entry = replace(entry, 'alice', 'alicf') WHERE idx = 3",
    );
    world.server.restart();
    let fresh = world.server.client();
    let (code, out, err) = fresh.status(&["log", "monitor", "main"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("does not hold the entries the log's tree does"),
        "{err}"
    );
    let (code, _, err) = fresh.status(&["verify", "main", &by_ci]);
    assert_eq!(code, 3, "{err}");

    // The operator rewrites history: the monitor exits 3, through the
    // remembered checkpoint, and through its own state alone (another
    // machine that only has the state file).
    rewrite_history(&mut world.server);
    checkpoint_of(&world.server.url, "main", &root, 6).await;
    auditor.ok(&["login", "test", &world.server.url, &root]);
    let (code, out, err) = auditor.status(&watched);
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("history was rewritten"), "{err}");
    let elsewhere = world.server.client();
    let (code, _, err) = elsewhere.status(&unexpected);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("not consistent with the tree of 5 entries this monitor read"),
        "{err}"
    );
}

#[tokio::test]
async fn provenixd_verify_rebuilds_each_log_and_finds_what_was_edited() {
    let server = TestServer::start_with(Backend::Sqlite, "[log]\nintegrate-interval = \"100ms\"\n");
    let token = server.token_with("alice", &["pull", "push", "create-cache"]);
    let alice = server.client_with_token(&token);
    alice.ok(&["cache", "create", "main"]);
    let store = NixStore::new();
    let path = store.add_input_addressed("verified", &[("blob", &random_bytes(21, 9_000))], &[]);
    alice.ok(&["push", "main", &path, "--store", &store.root()]);
    checkpoint_of(&server.url, "main", &token, 3).await;
    let (ok, out, err) = server.run_mode("verify");
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(r#""logs":[{"cache":"main","size":3,"problems":[]}]"#),
        "{out}"
    );

    // Each edit is found, and named; undone, the log is clean again.
    for (edit, undo, found) in [
        (
            "UPDATE uploads SET outcome = 'deduplicated' WHERE id = 1",
            "UPDATE uploads SET outcome = 'uploaded' WHERE id = 1",
            "entry 2 is not the entry its record (upload 1) makes",
        ),
        (
            "UPDATE log_entries SET entry = replace(entry, 'uploaded', 'deduplicated') WHERE idx = 2",
            "UPDATE log_entries SET entry = replace(entry, 'deduplicated', 'uploaded') WHERE idx = 2",
            "stored hashes differ from the entries'",
        ),
        (
            "UPDATE log_hashes SET hash = printf('%064d', 0) WHERE idx = 0",
            "",
            "stored hashes differ from the entries'",
        ),
        (
            "UPDATE log_hashes SET hash = 'not hex' WHERE idx = 0",
            "",
            "stored hashes: ",
        ),
        (
            "UPDATE log_heads SET published = replace(published, 'main/tlog', 'main/tlag')",
            "UPDATE log_heads SET published = replace(published, 'main/tlag', 'main/tlog')",
            "the published checkpoint is not signed by any of the log's keys",
        ),
    ] {
        let before: String = {
            let (_, out, _) = provenix_tests::run(
                std::process::Command::new("sqlite3")
                    .arg(sqlite_file(&server))
                    .arg("SELECT hash FROM log_hashes WHERE idx = 0"),
            );
            out.trim().to_string()
        };
        sqlite(&server, edit);
        let (ok, out, err) = server.run_mode("verify");
        assert!(!ok, "verify missed {edit:?}: {out}");
        assert!(out.contains(found), "{edit:?}: {out}");
        assert!(err.contains("1 damaged transparency logs"), "{err}");
        if undo.is_empty() {
            sqlite(
                &server,
                &format!("UPDATE log_hashes SET hash = '{before}' WHERE idx = 0"),
            );
        } else {
            sqlite(&server, undo);
        }
        let (ok, out, err) = server.run_mode("verify");
        assert!(ok, "after undoing {edit:?}: {out}{err}");
    }
}

#[tokio::test]
async fn a_rotated_log_key_is_taken_on_through_its_overlap_and_refused_without_one() {
    let server = TestServer::start_with(Backend::Sqlite, "[log]\nintegrate-interval = \"100ms\"\n");
    let token = server.token_with(
        "alice",
        &["pull", "push", "create-cache", "configure-cache"],
    );
    let alice = server.client_with_token(&token);
    alice.ok(&["cache", "create", "main"]);
    let store = NixStore::new();
    let push = |name: &str, seed: u64| {
        let p = store.add_input_addressed(name, &[("blob", &random_bytes(seed, 5_000))], &[]);
        alice.ok(&["push", "main", &p, "--store", &store.root()]);
    };
    push("one", 31);
    checkpoint_of(&server.url, "main", &token, 2).await;
    alice.ok(&["log", "checkpoint", "main"]);
    let (_, first_key) = log_identity(&server.url, "main", &token).await;

    // Rotated with an overlap: checkpoints carry both signatures, and the
    // client, which trusted the first key, takes the second on.
    let out = alice.ok(&[
        "cache",
        "configure",
        "main",
        "--rotate-log-key",
        "--key-overlap",
        "1h",
    ]);
    assert_eq!(out.matches("Log Key: ").count(), 2, "{out}");
    let (_, second_key) = log_identity(&server.url, "main", &token).await;
    assert_ne!(first_key, second_key);
    push("two", 32);
    let cp = checkpoint_of(&server.url, "main", &token, 4).await;
    for key in [&first_key, &second_key] {
        checkpoint::verify(&cp.note, key, &cp.origin).expect("signed by both keys");
    }
    let (ok, _, err) = alice.run(&["log", "checkpoint", "main"]);
    assert!(ok, "{err}");
    assert!(err.contains("now signed by a new key"), "{err}");

    // Rotated at once: a client that never saw the overlap refuses the
    // new key (exit 3), a client already on the second key does too, and
    // a new client takes the newest.
    let bob = server.client_with_token(&token);
    bob.ok(&["log", "checkpoint", "main"]);
    alice.ok(&[
        "cache",
        "configure",
        "main",
        "--rotate-log-key",
        "--key-overlap",
        "0s",
    ]);
    push("three", 33);
    let cp = checkpoint_of(&server.url, "main", &token, 6).await;
    let (_, third_key) = log_identity(&server.url, "main", &token).await;
    assert!(checkpoint::verify(&cp.note, &second_key, &cp.origin).is_err());
    let (code, _, err) = alice.status(&["log", "checkpoint", "main"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("not signed by the key this client trusts"),
        "{err}"
    );
    assert!(err.contains(&third_key), "{err}");
    assert_eq!(bob.status(&["log", "checkpoint", "main"]).0, 3);
    server
        .client_with_token(&token)
        .ok(&["log", "checkpoint", "main"]);
    // The rebuilt log still verifies: each checkpoint by the keys that
    // were live.
    let (ok, out, err) = server.run_mode("verify");
    assert!(ok, "{out}{err}");
}

provenix_tests::backend_tests! {
    for _local_disk(Backend::Sqlite, ObjectStorage::Local),
        _s3(Backend::Postgres, ObjectStorage::S3);
    async fn full_tiles_are_served_from_storage_and_a_tampered_one_is_caught =>
        full_tiles_are_served_from_storage_and_a_tampered_one_is_caught;
}

/// A closure of 300 paths fills the first tile and bundle: both are kept
/// in storage once asked for, served from there by another replica, and
/// an edit to the stored copy is refused by clients and named by
/// `--mode verify`; deleted, it is rebuilt from the database.
async fn full_tiles_are_served_from_storage_and_a_tampered_one_is_caught(
    backend: Backend,
    storage: ObjectStorage,
) {
    use rand::{Rng, SeedableRng};
    let mut server =
        TestServer::start_on(backend, storage, "[log]\nintegrate-interval = \"100ms\"\n");
    let token = server.token_with("alice", &["pull", "push", "create-cache"]);
    let alice = server.client_with_token(&token);
    alice.ok(&["cache", "create", "main"]);
    let store = NixStore::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    let closure = store
        .add_closure(300, "stored tiles", &mut rng, |rng, _| {
            (0..200).map(|_| rng.gen::<u8>()).collect()
        })
        .unwrap();
    alice.ok(&["push", "main", &closure.top, "--store", &store.root()]);
    let cp = checkpoint_of(&server.url, "main", &token, 303).await;
    let stored = |tile: &str| {
        let dir = server.storage_dir().join("tlog");
        let logs: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(logs.len() <= 1, "one log: {logs:?}");
        logs.first().map(|l| l.join(tile))
    };
    assert_eq!(stored("tile/0/000"), None, "stored only once asked for");

    // Served, complete and the log's own: each entry hashes to its leaf.
    let (status, leaves) = get(&format!("{}/main/tlog/tile/0/000", server.url), &token).await;
    assert_eq!(status, 200);
    assert_eq!(leaves.len(), 256 * 32);
    let (status, bundle) = get(
        &format!("{}/main/tlog/tile/entries/000", server.url),
        &token,
    )
    .await;
    assert_eq!(status, 200);
    let entries = tiles::unbundle(&bundle).expect("a well-formed bundle");
    assert_eq!(entries.len(), 256);
    for (entry, leaf) in entries.iter().zip(leaves.chunks(32)) {
        assert_eq!(
            &provenix_provenance::tlog::tree::record_hash(entry).0[..],
            leaf
        );
    }
    let hash_tile = stored("tile/0/000").expect("a stored tile");
    let bundle_file = stored("tile/entries/000").expect("a stored bundle");
    assert_eq!(std::fs::read(&hash_tile).unwrap(), leaves);
    assert_eq!(std::fs::read(&bundle_file).unwrap(), bundle);
    let (ok, out, err) = server.run_mode("verify");
    assert!(ok, "{out}{err}");

    // Another replica serves the same bytes.
    let b_dir = tempfile::tempdir().unwrap();
    let replica = (backend == Backend::Postgres).then(|| {
        provenix_tests::server::spawn_server(
            &server.config_path,
            b_dir.path(),
            &["--mode", "api-server", "--listen", "127.0.0.1:0"],
        )
    });
    let b_url = replica.as_ref().map_or(&server.url, |(_, url)| url);
    let (status, from_b) = get(&format!("{b_url}/main/tlog/tile/0/000"), &token).await;
    assert_eq!((status, &from_b), (200, &leaves));

    // An edit to the stored bundle: a server that read it before keeps
    // serving what it read; one that has not (restarted here, or another
    // replica) serves the edit, a client reading that entry refuses the
    // log, and --mode verify names the object.
    let mut edited = bundle.clone();
    let at = edited.len() - 10;
    edited[at] ^= 1;
    std::fs::write(&bundle_file, &edited).unwrap();
    let (status, served) = get(
        &format!("{}/main/tlog/tile/entries/000", server.url),
        &token,
    )
    .await;
    assert_eq!((status, &served), (200, &bundle), "kept in memory");
    if let Some((mut child, _)) = replica {
        child.kill().ok();
        child.wait().ok();
    }
    server.restart();
    let fresh = server.client_with_token(&token);
    let (code, _, err) = fresh.status(&["log", "proof", "main", "255"]);
    assert_eq!(code, 3, "{err}");
    let (ok, out, _) = server.run_mode("verify");
    assert!(!ok, "{out}");
    assert!(
        out.contains("stored tile tlog/") && out.contains("/tile/entries/000: differs"),
        "{out}"
    );
    // An edit to the stored hash tile: the tree no longer gives the
    // checkpoint's root.
    std::fs::write(&bundle_file, &bundle).unwrap();
    let mut edited = leaves.clone();
    edited[0] ^= 1;
    std::fs::write(&hash_tile, &edited).unwrap();
    server.restart();
    let (code, _, err) = server
        .client_with_token(&token)
        .status(&["log", "proof", "main", "3"]);
    assert_eq!(code, 3, "{err}");
    let (ok, out, _) = server.run_mode("verify");
    assert!(!ok && out.contains("/tile/0/000: differs"), "{out}");

    // Deleted, it is rebuilt from the database, and all is well again.
    std::fs::remove_file(&hash_tile).unwrap();
    server.restart();
    let fresh = server.client_with_token(&token);
    let out = fresh.ok(&["log", "proof", "main", "3", "--json"]);
    assert!(out.contains(&format!("\"size\": {}", cp.size)), "{out}");
    assert_eq!(
        cp.size, 303,
        "the CA, the key, 300 uploads and their closure"
    );
    assert_eq!(std::fs::read(&hash_tile).unwrap(), leaves);
    let (ok, out, err) = server.run_mode("verify");
    assert!(ok, "{out}{err}");
}

/// The CA that certifies a cache's keys is in the cache's log: a server
/// whose CA is replaced (here, by another server's, copied into its
/// database) logs the new one before the next key it certifies, where a
/// monitor flags it and a reader who pinned the old CA refuses it.
#[tokio::test]
async fn a_replaced_ca_is_logged_and_flagged() {
    let mut server =
        TestServer::start_with(Backend::Sqlite, "[log]\nintegrate-interval = \"100ms\"\n");
    let token = server.token_with("alice", &["pull", "push", "create-cache", "audit"]);
    let alice = server.client_with_token(&token);
    alice.ok(&["cache", "create", "main"]);
    let store = NixStore::new();
    let before = store.add_input_addressed("ca-before", &[("blob", &random_bytes(31, 9_000))], &[]);
    alice.ok(&["push", "main", &before, "--store", &store.root()]);
    checkpoint_of(&server.url, "main", &token, 3).await;
    let files = tempfile::tempdir().unwrap();
    let old_ca = files.path().join("old-ca.pem");
    let (_, pem) = get(&format!("{}/.well-known/provenix/ca.pem", server.url), "").await;
    std::fs::write(&old_ca, &pem).unwrap();
    let monitor = server.client_with_token(&token);
    monitor.ok(&["log", "monitor", "main"]);

    // Another server's CA, key and certificate, put in this one's place.
    let other = TestServer::start(Backend::Sqlite);
    other.client().ok(&["cache", "create", "x"]);
    let (_, other_pem) = get(&format!("{}/.well-known/provenix/ca.pem", other.url), "").await;
    assert_ne!(pem, other_pem);
    server.kill9();
    sqlite(
        &server,
        &format!(
            "ATTACH '{}' AS other; UPDATE certificate_authority SET
               key_pem = (SELECT key_pem FROM other.certificate_authority),
               cert_pem = (SELECT cert_pem FROM other.certificate_authority);",
            sqlite_file(&other).display()
        ),
    );
    server.restart();
    let alice = server.client_with_token(&token);
    let after = store.add_input_addressed("ca-after", &[("blob", &random_bytes(32, 9_000))], &[]);
    alice.ok(&["push", "main", &after, "--store", &store.root()]);
    // The new CA, the key it certified, the upload.
    let cp = checkpoint_of(&server.url, "main", &token, 6).await;
    let entries = entries_of(&server.url, "main", &token, &cp).await;
    assert_eq!(
        kinds(&entries)[3..],
        ["ca-certificate", "upload-key", "upload"]
    );
    assert_eq!(entries[3].body, other_pem);
    assert_eq!(entries[4].header.asserted["ca_index"], 3);

    // Verified against the CA the log holds for its key: each path passes,
    // each naming its own CA entry; pinned to the old CA, the new fails.
    let out = alice.ok(&["verify", "main", &after]);
    assert!(out.contains("by the CA logged at entry 3"), "{out}");
    let out = alice.ok(&["verify", "main", &before, "--ca", old_ca.to_str().unwrap()]);
    assert!(out.contains("by the CA logged at entry 0"), "{out}");
    let (code, out, _) =
        alice.status(&["verify", "main", &after, "--ca", old_ca.to_str().unwrap()]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("is not the one given with --ca"), "{out}");

    // The monitor flags the second CA, whoever it watches.
    monitor.ok(&["login", "test", &server.url, &token]);
    let (code, out, err) = monitor.status(&["log", "monitor", "main", "--identity", "nobody"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains("ANOMALY 3 a new CA certificate")
            && out.contains("the server's CA was replaced"),
        "{out}"
    );
}

/// On PostgreSQL + S3: a second builder's statement for a path already
/// cached (a witness: a closure statement vouching for it) is logged, and
/// replicas killed (kill -9) after the commits but before any integration
/// lose nothing: another replica integrates from the database.
#[tokio::test]
async fn a_witness_statement_survives_replicas_killed_before_integration_postgres_s3() {
    let mut server = TestServer::start_on(
        Backend::Postgres,
        ObjectStorage::S3,
        "[log]\nintegrate-interval = \"1 hour\"\n",
    );
    let b_dir = tempfile::tempdir().unwrap();
    let (mut replica_b, b_url) = provenix_tests::server::spawn_server(
        &server.config_path,
        b_dir.path(),
        &["--mode", "api-server", "--listen", "127.0.0.1:0"],
    );
    let alice_token = server.token_with("alice", &["pull", "push", "create-cache", "audit"]);
    let alice = server.client_with_token(&alice_token);
    alice.ok(&["cache", "create", "main"]);
    let store = NixStore::new();
    let path = store.add_input_addressed("witnessed", &[("blob", &random_bytes(33, 9_000))], &[]);
    alice.ok(&["push", "main", &path, "--store", &store.root()]);
    // Bob builds the same path and pushes through the other replica.
    let bob = Client::new();
    bob.ok(&[
        "login",
        "test",
        &b_url,
        &server.token_with("bob", &["pull", "push"]),
    ]);
    let out = bob.ok_stderr(&["push", "main", &path, "--store", &store.root()]);
    assert!(out.contains("1 already cached"), "{out}");
    let (status, _) = get(&format!("{b_url}/main/tlog/checkpoint"), &alice_token).await;
    assert_eq!(status, 404, "nothing integrated yet");

    server.kill9();
    let _ = replica_b.kill();
    let _ = replica_b.wait();
    let config = std::fs::read_to_string(&server.config_path).unwrap();
    std::fs::write(&server.config_path, config.replace("1 hour", "100ms")).unwrap();
    let c_dir = tempfile::tempdir().unwrap();
    let (mut replica_c, c_url) = provenix_tests::server::spawn_server(
        &server.config_path,
        c_dir.path(),
        &["--mode", "api-server", "--listen", "127.0.0.1:0"],
    );
    let cp = checkpoint_of(&c_url, "main", &alice_token, 5).await;
    let entries = entries_of(&c_url, "main", &alice_token, &cp).await;
    // Bob's statement is a closure statement: one signed entry vouching
    // for every path of his push the cache already had.
    assert_eq!(
        kinds(&entries),
        [
            "ca-certificate",
            "upload-key",
            "upload",
            "upload-key",
            "closure-statement"
        ]
    );
    assert_eq!(entries[3].header.asserted["subject"], "bob");
    let witness = &entries[4];
    assert_eq!(
        witness.header.asserted["key_id"],
        entries[3].header.asserted["key_id"]
    );
    assert!(
        String::from_utf8_lossy(&witness.body).contains(path.as_str()),
        "the statement names the path"
    );
    let bob_key = provenix_provenance::exchange::decode_public_key(
        entries[3].header.asserted["public_key"].as_str().unwrap(),
    )
    .unwrap();
    provenix_provenance::exchange::verify(
        &bob_key,
        &witness.body,
        witness.header.asserted["signature"].as_str().unwrap(),
    )
    .expect("bob's key signed the logged closure statement");
    // Alice's record verifies against the log the third replica built.
    let auditor = Client::new();
    auditor.ok(&["login", "test", &c_url, &alice_token]);
    let out = auditor.ok(&["verify", "main", &path]);
    assert!(
        out.contains("no later revocation in the log covers it"),
        "{out}"
    );
    let _ = replica_c.kill();
    let _ = replica_c.wait();
}

/// A cache keeps its log: a server that names another log origin for a
/// cache a client followed (the attack review got past the remembered
/// checkpoint that way) is refused until the user removes the memory.
#[tokio::test]
async fn a_cache_that_names_another_log_is_refused() {
    let mut server =
        TestServer::start_with(Backend::Sqlite, "[log]\nintegrate-interval = \"100ms\"\n");
    let token = server.token_with("alice", &["pull", "push", "create-cache"]);
    let alice = server.client_with_token(&token);
    alice.ok(&["cache", "create", "main"]);
    let store = NixStore::new();
    let path = store.add_input_addressed("origin", &[("blob", &random_bytes(41, 9_000))], &[]);
    alice.ok(&["push", "main", &path, "--store", &store.root()]);
    checkpoint_of(&server.url, "main", &token, 3).await;
    alice.ok(&["log", "checkpoint", "main"]);

    // The operator starts the cache a new log, under another origin.
    server.kill9();
    sqlite(
        &server,
        "UPDATE log_keys SET origin = origin || '2';
         DELETE FROM log_entries; DELETE FROM log_hashes; DELETE FROM log_heads;",
    );
    server.restart_on_same_port();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, _, err) = alice.status(&["log", "checkpoint", "main"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("now names the log") && err.contains("but this client followed"),
        "{err}"
    );
}
