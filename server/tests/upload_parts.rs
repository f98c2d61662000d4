//! Uploads in parts (issue 20, "Through proxies with body limits"), in
//! process: the server announces its limit, takes parts in any order,
//! makes the path visible only at completion and only if the parts make
//! the signed NAR, refuses every malformed part without recording it, and
//! reclaims what an abandoned upload left.

mod harness;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use harness::{statement, Answer, Harness, UploadKey};
use provenix_provenance::upload_parts::MIN_PART_SIZE;
use rand::RngCore;
use serde_json::json;
use std::time::Duration;

const HASH: &str = "0123456789abcdfghijklmnpqrsvwxyz";

fn store_path() -> String {
    format!("/nix/store/{HASH}-big")
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

/// A server announcing the smallest part size, and a key for `main`.
async fn server(edit: impl FnOnce(&mut provenix_server::config::Config)) -> (Harness, UploadKey) {
    let h = Harness::with_config(|c| {
        c.max_request_body = MIN_PART_SIZE;
        edit(c)
    })
    .await;
    h.create_cache("main", false).await;
    let key = h.exchange(&h.root, "main").await;
    (h, key)
}

async fn start(h: &Harness, key: &UploadKey, nar: &[u8]) -> Answer {
    let mut info = statement("main", &store_path(), nar, None);
    key.sign(&mut info);
    start_signed(h, key, &info).await
}

async fn start_signed(
    h: &Harness,
    key: &UploadKey,
    info: &provenix_provenance::upload::UploadPathNarInfo,
) -> Answer {
    h.call(
        Method::POST,
        "/_api/v1/upload-sessions",
        Some(&key.session),
        Some(serde_json::to_value(info).unwrap()),
    )
    .await
}

async fn session(h: &Harness, key: &UploadKey, nar: &[u8]) -> String {
    let a = start(h, key, nar).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.json["session"]["id"]
        .as_str()
        .expect("a session")
        .to_string()
}

async fn put_part(h: &Harness, key: &UploadKey, id: &str, n: u64, bytes: &[u8]) -> Answer {
    put_part_as(h, Some(&key.session), id, n, bytes).await
}

async fn put_part_as(h: &Harness, token: Option<&str>, id: &str, n: u64, bytes: &[u8]) -> Answer {
    let mut req = Request::builder()
        .method(Method::PUT)
        .uri(format!("/_api/v1/upload-sessions/{id}/parts/{n}"));
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from(bytes.to_vec()))
        .unwrap();
    h.send(req).await
}

fn part(nar: &[u8], n: u64) -> &[u8] {
    let start = (n * MIN_PART_SIZE) as usize;
    &nar[start..(start + MIN_PART_SIZE as usize).min(nar.len())]
}

async fn complete(h: &Harness, key: &UploadKey, id: &str) -> Answer {
    h.call(
        Method::POST,
        &format!("/_api/v1/upload-sessions/{id}/complete"),
        Some(&key.session),
        None,
    )
    .await
}

async fn status(h: &Harness, key: &UploadKey, id: &str) -> Answer {
    h.get(
        &format!("/_api/v1/upload-sessions/{id}"),
        Some(&key.session),
    )
    .await
}

async fn narinfo(h: &Harness) -> Answer {
    h.get(&format!("/main/{HASH}.narinfo"), Some(&h.root)).await
}

fn upload_objects(h: &Harness) -> Vec<std::path::PathBuf> {
    h.stored_files()
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "uploads"))
        .collect()
}

#[tokio::test]
async fn a_nar_sent_in_parts_in_any_order_is_served_whole_once_completed() {
    let (h, key) = server(|_| {}).await;
    let a = h
        .call(
            Method::POST,
            "/_api/v1/get-missing-paths",
            Some(&key.session),
            Some(json!({"cache": "main", "store_path_hashes": [HASH]})),
        )
        .await;
    assert_eq!(a.json["max_request_body"], MIN_PART_SIZE, "{}", a.text);

    let nar = nar(3 * MIN_PART_SIZE as usize + 1000);
    let started = start(&h, &key, &nar).await;
    assert_eq!(started.json["session"]["part_count"], 4, "{}", started.text);
    assert_eq!(started.json["session"]["part_size"], MIN_PART_SIZE);
    let id = started.json["session"]["id"].as_str().unwrap().to_string();
    for n in [3, 1, 0] {
        let a = put_part(&h, &key, &id, n, part(&nar, n)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        assert_eq!(a.json["part"], n);
    }
    // Sending a part again replaces it.
    assert_eq!(
        put_part(&h, &key, &id, 1, part(&nar, 1)).await.status,
        StatusCode::OK
    );
    let st = status(&h, &key, &id).await;
    assert_eq!(st.json["received"], json!([0, 1, 3]), "{}", st.text);
    // Parts stored are not a path yet, and completing early stores nothing.
    assert_eq!(narinfo(&h).await.status, StatusCode::NOT_FOUND);
    complete(&h, &key, &id)
        .await
        .assert_refused(409, "upload-incomplete");
    assert_eq!(narinfo(&h).await.status, StatusCode::NOT_FOUND);

    assert_eq!(
        put_part(&h, &key, &id, 2, part(&nar, 2)).await.status,
        StatusCode::OK
    );
    let done = complete(&h, &key, &id).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.json["outcome"], "uploaded");
    // Completing again (an answer lost on the way) answers the same.
    assert_eq!(complete(&h, &key, &id).await.json["outcome"], "uploaded");
    put_part(&h, &key, &id, 0, part(&nar, 0))
        .await
        .assert_refused(400, "invalid-part");

    let info = narinfo(&h).await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.text);
    let url = info
        .text
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .expect("a URL line");
    let served = h.get(&format!("/main/{url}"), Some(&h.root)).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(zstd::decode_all(&served.bytes[..]).unwrap(), nar);
    // The parts are deleted once the NAR is stored as chunks.
    assert_eq!(upload_objects(&h), Vec::<std::path::PathBuf>::new());

    // A path the cache has needs no session.
    let again = start(&h, &key, &nar).await;
    assert_eq!(again.json["outcome"], "exists", "{}", again.text);
    assert!(again.json.get("session").is_none());
}

#[tokio::test]
async fn a_malformed_part_is_refused_and_recorded_nowhere() {
    let (h, key) = server(|_| {}).await;
    let nar = nar(2 * MIN_PART_SIZE as usize + 10);
    let id = session(&h, &key, &nar).await;
    let full = part(&nar, 0);
    put_part(&h, &key, &id, 0, &full[..full.len() - 1])
        .await
        .assert_refused(400, "invalid-part");
    let mut long = full.to_vec();
    long.push(0);
    put_part(&h, &key, &id, 0, &long)
        .await
        .assert_refused(400, "invalid-part");
    // The last part is shorter; a full-size one there is wrong.
    put_part(&h, &key, &id, 2, full)
        .await
        .assert_refused(400, "invalid-part");
    put_part(&h, &key, &id, 3, b"x")
        .await
        .assert_refused(400, "invalid-part");
    let st = status(&h, &key, &id).await;
    assert_eq!(st.json["received"], json!([]), "{}", st.text);
    assert_eq!(upload_objects(&h), Vec::<std::path::PathBuf>::new());

    for bad in [
        "0123456789abcdef0123456789abcdef".to_string(),
        "not-a-session".to_string(),
        id.to_uppercase(),
    ] {
        put_part(&h, &key, &bad, 0, full)
            .await
            .assert_refused(404, "no-such-upload");
        status(&h, &key, &bad)
            .await
            .assert_refused(404, "no-such-upload");
        complete(&h, &key, &bad)
            .await
            .assert_refused(404, "no-such-upload");
    }
    let a = h
        .call(
            Method::PUT,
            &format!("/_api/v1/upload-sessions/{id}/parts/minus-one"),
            Some(&key.session),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert!(a.json["code"].is_string(), "{}", a.text);
}

#[tokio::test]
async fn parts_that_are_not_the_signed_nar_make_nothing_visible() {
    let (h, key) = server(|_| {}).await;
    let signed = nar(2 * MIN_PART_SIZE as usize);
    let other = nar(2 * MIN_PART_SIZE as usize);
    let id = session(&h, &key, &signed).await;
    for n in 0..(other.len() as u64).div_ceil(MIN_PART_SIZE) {
        assert_eq!(
            put_part(&h, &key, &id, n, part(&other, n)).await.status,
            StatusCode::OK
        );
    }
    complete(&h, &key, &id)
        .await
        .assert_refused(400, "nar-hash-mismatch");
    assert_eq!(narinfo(&h).await.status, StatusCode::NOT_FOUND);
    // The session is over and its parts and chunks are gone.
    status(&h, &key, &id)
        .await
        .assert_refused(404, "no-such-upload");
    h.assert_storage_empties().await;
}

/// A session of two parts, the first sent, then its key revoked.
async fn one_part_then_revoked(h: &Harness, key: &UploadKey) -> (Vec<u8>, String) {
    let nar = nar(2 * MIN_PART_SIZE as usize);
    let id = session(h, key, &nar).await;
    assert_eq!(
        put_part(h, key, &id, 0, part(&nar, 0)).await.status,
        StatusCode::OK
    );
    let r = h
        .call(
            Method::POST,
            "/_api/v1/revoke",
            Some(&h.root),
            Some(json!({"cache": "main", "key": key.key_id, "reason": "test"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    (nar, id)
}

#[tokio::test]
async fn a_revoked_key_stops_its_upload_session() {
    let (h, key) = server(|_| {}).await;
    let (nar, id) = one_part_then_revoked(&h, &key).await;
    put_part(&h, &key, &id, 1, part(&nar, 1))
        .await
        .assert_refused(401, "key-revoked");
    complete(&h, &key, &id)
        .await
        .assert_refused(401, "key-revoked");
    assert_eq!(narinfo(&h).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_abandoned_upload_is_reclaimed_once_its_key_expired() {
    let (h, key) = server(|c| {
        c.signing_keys.lifetime = Duration::from_secs(1);
        c.signing_keys.completion_grace = Duration::ZERO;
    })
    .await;
    let nar = nar(2 * MIN_PART_SIZE as usize);
    let id = session(&h, &key, &nar).await;
    assert_eq!(
        put_part(&h, &key, &id, 0, part(&nar, 0)).await.status,
        StatusCode::OK
    );
    assert_eq!(upload_objects(&h).len(), 1);
    // Still open: GC leaves it.
    let r = provenix_server::maintenance::gc::run_once(&h.state)
        .await
        .unwrap();
    assert_eq!(r.reclaimed_upload_sessions, 0);
    assert_eq!(upload_objects(&h).len(), 1);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    put_part(&h, &key, &id, 1, part(&nar, 1))
        .await
        .assert_refused(401, "key-expired");
    let r = provenix_server::maintenance::gc::run_once(&h.state)
        .await
        .unwrap();
    assert_eq!(r.reclaimed_upload_sessions, 1);
    assert_eq!(upload_objects(&h), Vec::<std::path::PathBuf>::new());
    status(&h, &key, &id)
        .await
        .assert_refused(404, "no-such-upload");
}

#[tokio::test]
async fn a_session_is_the_pushers_alone_and_one_per_statement() {
    let (h, key) = server(|_| {}).await;
    h.create_cache("other", false).await;
    let nar = nar(2 * MIN_PART_SIZE as usize);
    let mut info = statement("main", &store_path(), &nar, None);
    key.sign(&mut info);
    let id = start_signed(&h, &key, &info).await.json["session"]["id"]
        .as_str()
        .expect("a session")
        .to_string();
    // The same statement again: refused, as a replayed upload is.
    start_signed(&h, &key, &info)
        .await
        .assert_refused(409, "statement-replayed");
    // Without a token, or with one that may not push to main, the session
    // does not exist; with a token to push elsewhere, neither.
    let elsewhere = h.token("eve", "other", harness::perm(|p| p.push = true));
    for token in [None, Some(elsewhere.as_str())] {
        put_part_as(&h, token, &id, 0, part(&nar, 0))
            .await
            .assert_refused(404, "no-such-upload");
    }
    let a = h
        .call(
            Method::POST,
            &format!("/_api/v1/upload-sessions/{id}/complete"),
            Some(&elsewhere),
            None,
        )
        .await;
    a.assert_refused(404, "no-such-upload");
    h.get(&format!("/_api/v1/upload-sessions/{id}"), None)
        .await
        .assert_refused(404, "no-such-upload");
    assert_eq!(upload_objects(&h), Vec::<std::path::PathBuf>::new());
    // Opening one needs the push token too.
    let mut again = statement("main", &store_path(), &nar, None);
    key.sign(&mut again);
    let a = h
        .call(
            Method::POST,
            "/_api/v1/upload-sessions",
            None,
            Some(serde_json::to_value(&again).unwrap()),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text);
}

#[tokio::test]
async fn a_statement_claiming_an_absurd_size_or_too_long_opens_nothing() {
    let (h, key) = server(|_| {}).await;
    let mut huge = statement("main", &store_path(), b"", None);
    huge.nar_size = 1 << 44;
    key.sign(&mut huge);
    start_signed(&h, &key, &huge)
        .await
        .assert_refused(400, "invalid-nar-info");
    // A statement larger than an upload's header may be.
    let mut long = statement("main", &store_path(), b"x", None);
    long.references = (0..4000)
        .map(|i| format!("/nix/store/{HASH}-reference-with-a-long-name-{i:05}"))
        .collect();
    key.sign(&mut long);
    let a = start_signed(&h, &key, &long).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text);
    assert!(a.json["code"].is_string(), "{}", a.text);
}

#[tokio::test]
async fn concurrent_completions_store_the_path_once_and_agree() {
    let (h, key) = server(|_| {}).await;
    let nar = nar(4 * MIN_PART_SIZE as usize);
    let id = session(&h, &key, &nar).await;
    for n in 0..(nar.len() as u64).div_ceil(MIN_PART_SIZE) {
        assert_eq!(
            put_part(&h, &key, &id, n, part(&nar, n)).await.status,
            StatusCode::OK
        );
    }
    let answers = futures::future::join_all((0..4).map(|_| complete(&h, &key, &id))).await;
    let mut uploaded = 0;
    for a in &answers {
        match a.status {
            StatusCode::OK => {
                assert_eq!(a.json["outcome"], "uploaded", "{}", a.text);
                uploaded += 1;
            }
            _ => a.assert_refused(503, "retry"),
        }
    }
    assert!(uploaded >= 1, "{answers:?}");
    // Asked again once done, every one hears the outcome.
    assert_eq!(complete(&h, &key, &id).await.json["outcome"], "uploaded");
    assert_eq!(narinfo(&h).await.status, StatusCode::OK);
    assert_eq!(upload_objects(&h), Vec::<std::path::PathBuf>::new());
}

/// The key's session token goes with it; another token that may push
/// there (the pusher's own, an admin's) cancels.
#[tokio::test]
async fn a_revoked_key_may_still_give_its_parts_back() {
    let (h, key) = server(|_| {}).await;
    let (_, id) = one_part_then_revoked(&h, &key).await;
    let a = h
        .call(
            Method::DELETE,
            &format!("/_api/v1/upload-sessions/{id}"),
            Some(&key.session),
            None,
        )
        .await;
    a.assert_refused(401, "key-revoked");
    let a = h
        .call(
            Method::DELETE,
            &format!("/_api/v1/upload-sessions/{id}"),
            Some(&h.root),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    assert_eq!(upload_objects(&h), Vec::<std::path::PathBuf>::new());
}
