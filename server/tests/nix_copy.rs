//! Nix's own HTTP binary cache upload (`nix copy --to`, issue 20), in
//! process: a NAR file PUT is staged and checked against its name, the
//! narinfo PUT after it makes the path visible only when signed by a Nix
//! key registered for the token's subject and describing that NAR; every
//! refusal leaves nothing visible, and GC reclaims what no narinfo claimed.

mod harness;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use harness::{perm, Answer, Harness};
use provenix_provenance::hash::NarHash;
use provenix_provenance::narinfo::NarInfo;
use provenix_provenance::signing::SecretKey;
use rand::RngCore;
use serde_json::json;

const HASH: &str = "0123456789abcdfghijklmnpqrsvwxyz";
const SUBJECT: &str = "deploy-bot";

fn store_path() -> String {
    format!("/nix/store/{HASH}-app")
}

/// A NAR of one file of `len` random bytes.
fn nar(len: usize) -> Vec<u8> {
    let mut contents = vec![0; len];
    rand::rngs::OsRng.fill_bytes(&mut contents);
    provenix_provenance::nar::write(&provenix_provenance::nar::Node::Regular {
        executable: false,
        contents,
    })
}

/// The file Nix would PUT for `nar` with zstd, and its name.
fn zstd_file(nar: &[u8]) -> (String, Vec<u8>) {
    let file = zstd::encode_all(nar, 3).unwrap();
    let name = format!("{}.nar.zst", NarHash::of(&file).to_nixbase32());
    (name, file)
}

/// The narinfo Nix writes for `nar` stored as `file_name` (`file`),
/// signed by `key` if given.
fn narinfo(nar: &[u8], file_name: &str, file: &[u8], key: Option<&SecretKey>) -> String {
    let mut info = NarInfo {
        store_path: store_path(),
        url: format!("nar/{file_name}"),
        compression: if file_name.ends_with(".zst") {
            "zstd".into()
        } else {
            "none".into()
        },
        file_hash: Some(NarHash::of(file).to_nix_string()),
        file_size: Some(file.len() as u64),
        nar_hash: NarHash::of(nar),
        nar_size: nar.len() as u64,
        references: vec![],
        deriver: None,
        sigs: vec![],
        ca: None,
    };
    if let Some(k) = key {
        info.sign("/nix/store", k);
    }
    info.render()
}

struct World {
    h: Harness,
    key: SecretKey,
    token: String,
    registration: i64,
}

/// A private cache `main`, a Nix key registered for `deploy-bot`, and a
/// push-and-pull token of `deploy-bot`.
async fn world() -> World {
    let h = Harness::new().await;
    h.create_cache("main", false).await;
    let key = SecretKey::generate("deploy-1").unwrap();
    let a = register(&h, &key.public().to_nix_string(), SUBJECT).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let token = h.token(
        SUBJECT,
        "main",
        perm(|p| {
            p.push = true;
            p.pull = true;
        }),
    );
    World {
        registration: a.json["id"].as_i64().unwrap(),
        h,
        key,
        token,
    }
}

async fn register(h: &Harness, nix_key: &str, subject: &str) -> Answer {
    h.call(
        Method::POST,
        "/_api/v1/cache-config/main/publishers",
        Some(&h.root),
        Some(json!({"kind": "nix-key", "nix-key": nix_key, "subject": subject})),
    )
    .await
}

async fn put(h: &Harness, uri: &str, token: Option<&str>, body: Vec<u8>) -> Answer {
    let mut req = Request::builder()
        .method(Method::PUT)
        .uri(uri)
        .header(header::CONTENT_LENGTH, body.len());
    if let Some(t) = token {
        // Nix sends the netrc's password as Basic auth.
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("x:{t}"));
        req = req.header(header::AUTHORIZATION, format!("Basic {basic}"));
    }
    h.send(req.body(Body::from(body)).unwrap()).await
}

async fn put_nar(w: &World, name: &str, file: &[u8]) -> Answer {
    put(
        &w.h,
        &format!("/main/nar/{name}"),
        Some(&w.token),
        file.to_vec(),
    )
    .await
}

async fn put_narinfo(w: &World, text: &str) -> Answer {
    put(
        &w.h,
        &format!("/main/{HASH}.narinfo"),
        Some(&w.token),
        text.as_bytes().to_vec(),
    )
    .await
}

async fn served_narinfo(w: &World) -> Answer {
    w.h.get(&format!("/main/{HASH}.narinfo"), Some(&w.token))
        .await
}

fn staged_files(h: &Harness) -> Vec<std::path::PathBuf> {
    let dir = h.dir.path().join("storage/nix-copy");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

#[tokio::test]
async fn a_staged_nar_becomes_a_path_with_its_signed_narinfo() {
    let w = world().await;
    let nar = nar(300_000);
    let (name, file) = zstd_file(&nar);
    let a = put_nar(&w, &name, &file).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(staged_files(&w.h).len(), 1);
    // Staged is not visible.
    assert_eq!(served_narinfo(&w).await.status, StatusCode::NOT_FOUND);

    let text = narinfo(&nar, &name, &file, Some(&w.key));
    let a = put_narinfo(&w, &text).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["outcome"], "uploaded");
    assert_eq!(staged_files(&w.h), Vec::<std::path::PathBuf>::new());

    // Served as any path: re-signed with the cache's key, its NAR whole.
    let served = served_narinfo(&w).await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.text);
    let info = NarInfo::parse(&served.text).unwrap();
    assert_eq!(info.nar_hash, NarHash::of(&nar));
    assert!(
        info.sigs.iter().any(|s| s.starts_with("main-1:")),
        "{served:?}",
        served = served.text
    );
    let got =
        w.h.get(&format!("/main/{}", info.url), Some(&w.token))
            .await;
    assert_eq!(zstd::decode_all(got.bytes.as_slice()).unwrap(), nar);

    // Recorded with the token's subject, the registered key and the
    // narinfo as received.
    let p =
        w.h.get(
            &format!("/_api/v1/cache/main/provenance/{HASH}"),
            Some(&w.h.root),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    let record = &p.json["uploads"][0];
    assert_eq!(record["key"]["subject"], SUBJECT, "{}", p.text);
    assert_eq!(record["key"]["kind"], "nix-key", "{}", p.text);
    assert_eq!(record["statement"], text.as_str());
    assert!(record["signature"]
        .as_str()
        .unwrap()
        .starts_with("deploy-1:"));

    // Nix retrying the same narinfo: answered, recorded once.
    let again = put_narinfo(&w, &text).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let p =
        w.h.get(
            &format!("/_api/v1/cache/main/provenance/{HASH}"),
            Some(&w.h.root),
        )
        .await;
    assert_eq!(p.json["uploads"].as_array().unwrap().len(), 1, "{}", p.text);
}

#[tokio::test]
async fn an_uncompressed_nar_file_is_taken_too() {
    let w = world().await;
    let nar = nar(10_000);
    let name = format!("{}.nar", NarHash::of(&nar).to_nixbase32());
    assert_eq!(put_nar(&w, &name, &nar).await.status, StatusCode::CREATED);
    let a = put_narinfo(&w, &narinfo(&nar, &name, &nar, Some(&w.key))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(served_narinfo(&w).await.status, StatusCode::OK);
}

#[tokio::test]
async fn nar_files_are_refused_unless_named_by_their_hash_and_sent_by_a_registered_subject() {
    let w = world().await;
    let nar = nar(10_000);
    let (name, file) = zstd_file(&nar);
    // Another file's hash in the name.
    let (other_name, _) = zstd_file(b"something else entirely");
    put_nar(&w, &other_name, &file)
        .await
        .assert_refused(400, "file-hash-mismatch");
    put_nar(&w, &name.replace(".zst", ".bz2"), &file)
        .await
        .assert_refused(400, "unsupported-compression");
    put_nar(&w, "not-a-nar-name.nar", &file)
        .await
        .assert_refused(400, "invalid-request");
    // A subject with push but no registered key stages nothing.
    let alice = w.h.token("alice", "main", perm(|p| p.push = true));
    put(
        &w.h,
        &format!("/main/nar/{name}"),
        Some(&alice),
        file.clone(),
    )
    .await
    .assert_refused(403, "unregistered-nix-key");
    // Pull only: no push.
    let reader = w.h.token(SUBJECT, "main", perm(|p| p.pull = true));
    put(
        &w.h,
        &format!("/main/nar/{name}"),
        Some(&reader),
        file.clone(),
    )
    .await
    .assert_refused(403, "permission-denied");
    // No token: pushing needs one, whatever the cache (nothing disclosed).
    put(&w.h, &format!("/main/nar/{name}"), None, file.clone())
        .await
        .assert_refused(401, "unauthorized");
    put(&w.h, &format!("/absent/nar/{name}"), None, file.clone())
        .await
        .assert_refused(401, "unauthorized");
    assert_eq!(staged_files(&w.h), Vec::<std::path::PathBuf>::new());
    // Nor can a narinfo be PUT without push.
    put(
        &w.h,
        &format!("/main/{HASH}.narinfo"),
        Some(&reader),
        narinfo(&nar, &name, &file, Some(&w.key)).into_bytes(),
    )
    .await
    .assert_refused(403, "permission-denied");
    put(
        &w.h,
        &format!("/main/{HASH}.ls"),
        Some(&w.token),
        b"{}".to_vec(),
    )
    .await
    .assert_refused(400, "invalid-request");
}

#[tokio::test]
async fn a_narinfo_is_refused_unless_a_registered_key_signed_it_for_the_staged_nar() {
    let w = world().await;
    let nar = nar(50_000);
    let (name, file) = zstd_file(&nar);
    let signed = |key: Option<&SecretKey>| narinfo(&nar, &name, &file, key);

    // Before its NAR.
    put_narinfo(&w, &signed(Some(&w.key)))
        .await
        .assert_refused(409, "upload-incomplete");
    assert_eq!(put_nar(&w, &name, &file).await.status, StatusCode::CREATED);
    // Unsigned, or signed by a key of the same name not registered.
    put_narinfo(&w, &signed(None))
        .await
        .assert_refused(403, "unregistered-nix-key");
    let impostor = SecretKey::generate("deploy-1").unwrap();
    put_narinfo(&w, &signed(Some(&impostor)))
        .await
        .assert_refused(403, "unregistered-nix-key");
    // The registered key, but the token of a subject it is not registered for.
    let alice_key = SecretKey::generate("alice-1").unwrap();
    register(&w.h, &alice_key.public().to_nix_string(), "alice").await;
    let alice = w.h.token("alice", "main", perm(|p| p.push = true));
    put(
        &w.h,
        &format!("/main/{HASH}.narinfo"),
        Some(&alice),
        signed(Some(&w.key)).into_bytes(),
    )
    .await
    .assert_refused(403, "unregistered-nix-key");
    // PUT as another path's narinfo.
    put(
        &w.h,
        "/main/00000000000000000000000000000000.narinfo",
        Some(&w.token),
        signed(Some(&w.key)).into_bytes(),
    )
    .await
    .assert_refused(400, "invalid-nar-info");
    // FileSize not the staged file's.
    let wrong_size = signed(Some(&w.key)).replace(
        &format!("FileSize: {}", file.len()),
        &format!("FileSize: {}", file.len() + 1),
    );
    put_narinfo(&w, &wrong_size)
        .await
        .assert_refused(400, "file-hash-mismatch");
    // That refusal discarded the staged file (bytes a narinfo disowned).
    assert_eq!(staged_files(&w.h), Vec::<std::path::PathBuf>::new());
    assert_eq!(served_narinfo(&w).await.status, StatusCode::NOT_FOUND);

    // Signed, but describing another NAR than the staged one: the ingest
    // checks the NAR against the narinfo's NarHash.
    assert_eq!(put_nar(&w, &name, &file).await.status, StatusCode::CREATED);
    let other = self::nar(50_000);
    let mut lying = NarInfo::parse(&signed(None)).unwrap();
    lying.nar_hash = NarHash::of(&other);
    lying.sign("/nix/store", &w.key);
    put_narinfo(&w, &lying.render())
        .await
        .assert_refused(400, "nar-hash-mismatch");
    assert_eq!(served_narinfo(&w).await.status, StatusCode::NOT_FOUND);

    // A file that is not a NAR, named and described by its own hash.
    let garbage = b"certainly not a NAR archive".repeat(10);
    let garbage_name = format!("{}.nar", NarHash::of(&garbage).to_nixbase32());
    assert_eq!(
        put_nar(&w, &garbage_name, &garbage).await.status,
        StatusCode::CREATED
    );
    put_narinfo(
        &w,
        &narinfo(&garbage, &garbage_name, &garbage, Some(&w.key)),
    )
    .await
    .assert_refused(400, "malformed-nar");
    assert_eq!(served_narinfo(&w).await.status, StatusCode::NOT_FOUND);

    // Removed registration: the key signs nothing more.
    assert_eq!(put_nar(&w, &name, &file).await.status, StatusCode::CREATED);
    let removed =
        w.h.call(
            Method::DELETE,
            &format!("/_api/v1/cache-config/main/publishers/{}", w.registration),
            Some(&w.h.root),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.text);
    put_narinfo(&w, &signed(Some(&w.key)))
        .await
        .assert_refused(403, "unregistered-nix-key");
    assert_eq!(served_narinfo(&w).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_nix_key_is_registered_once_per_subject_and_cache() {
    let w = world().await;
    let public = w.key.public().to_nix_string();
    // The same key for another subject: refused, naming the key.
    register(&w.h, &public, "someone-else")
        .await
        .assert_refused(409, "key-reused");
    register(&w.h, "deploy-1:not-base64", SUBJECT)
        .await
        .assert_refused(400, "invalid-publisher");
    register(&w.h, &public, "")
        .await
        .assert_refused(400, "invalid-publisher");
    // Only a cache's admins register keys.
    let a =
        w.h.call(
            Method::POST,
            "/_api/v1/cache-config/main/publishers",
            Some(&w.token),
            Some(json!({"kind": "nix-key", "nix-key": public, "subject": "x"})),
        )
        .await;
    a.assert_refused(403, "permission-denied");
    let list =
        w.h.get("/_api/v1/cache-config/main/publishers", Some(&w.h.root))
            .await;
    assert_eq!(list.json.as_array().unwrap().len(), 1, "{}", list.text);
    assert_eq!(list.json[0]["publisher"]["nix-key"], public.as_str());
}

#[tokio::test]
async fn gc_reclaims_staged_files_no_narinfo_claimed() {
    let w = world().await;
    let nar = nar(10_000);
    let (name, file) = zstd_file(&nar);
    assert_eq!(put_nar(&w, &name, &file).await.status, StatusCode::CREATED);
    let gc = || provenix_server::maintenance::gc::run_once(&w.h.state);
    assert_eq!(gc().await.unwrap().reclaimed_staged_nars, 0);
    assert_eq!(staged_files(&w.h).len(), 1);
    // An hour later (the row aged in the database, a stray object on disk).
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}/server.db", w.h.dir.path().display()))
        .await
        .unwrap();
    sqlx::query("UPDATE staged_nars SET created_at = created_at - 7200")
        .execute(&db)
        .await
        .unwrap();
    let stray = w.h.dir.path().join("storage/nix-copy/0123abcd");
    std::fs::write(&stray, b"left by a PUT cut short").unwrap();
    let aged = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&stray)
        .status()
        .unwrap();
    assert!(aged.success());
    assert_eq!(gc().await.unwrap().reclaimed_staged_nars, 2);
    assert_eq!(staged_files(&w.h), Vec::<std::path::PathBuf>::new());
    put_narinfo(&w, &narinfo(&nar, &name, &file, Some(&w.key)))
        .await
        .assert_refused(409, "upload-incomplete");
}
