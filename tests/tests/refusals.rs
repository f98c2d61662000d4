//! Bad input gets a clear `{code, message}` and changes nothing visible.

use provenix_provenance::nar::{self, Node};
use provenix_provenance::upload::UploadPathNarInfo;
use provenix_provenance::{NarHash, NarInfo, StorePath, DEFAULT_STORE_DIR};
use provenix_tests::http::{assert_refused, new_key, sample_package_nar, upload_info, Http};
use provenix_tests::{backend_tests, Backend, TestServer};
use serde_json::json;

const PATH: &str = "/nix/store/7rjj86a15146cq1d3qy068lml7n8ykzm-hello-2.12.1";
const HASH: &str = "7rjj86a15146cq1d3qy068lml7n8ykzm";

async fn assert_not_visible(http: &Http, token: &str, cache: &str) {
    let (status, body, _) = http
        .get(&format!("/{cache}/{HASH}.narinfo"), Some(token))
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body, _) = http
        .post_json(
            "/_api/v1/get-missing-paths",
            Some(token),
            &json!({"cache": cache, "store_path_hashes": [HASH]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["missing_paths"], json!([HASH]));
}

backend_tests! {
    async fn bad_uploads_are_refused => bad_uploads_are_refused;
}

async fn bad_uploads_are_refused(backend: Backend) {
    let server = TestServer::start(backend);
    let root = server.root_token.clone();
    server.client().ok(&["cache", "create", "main"]);
    let http = Http::new(&server.url);
    let key = http.key_for(&root, "main").await;
    let good = sample_package_nar("#!/bin/sh\necho hello\n");

    // A NAR that is not a NAR, with a hash and size that match its bytes.
    let mut corrupt = good.clone();
    corrupt[10] ^= 0xff;
    let a = http
        .signed_upload(&key, &upload_info("main", PATH, &corrupt), &corrupt)
        .await;
    assert_refused(&a, 400, "malformed-nar", None);

    // A NAR whose entry name climbs out of the store path.
    let mut evil = Vec::new();
    for (i, part) in nar::write(&Node::Directory(vec![(
        "x".into(),
        Node::Symlink { target: "y".into() },
    )]))
    .chunks(8)
    .enumerate()
    {
        // Replace the 8-byte name "x" (padded) with "..".
        if part.starts_with(b"x\0") && i > 0 {
            evil.extend_from_slice(b"..\0\0\0\0\0\0");
            let len_at = evil.len() - 16;
            evil[len_at..len_at + 8].copy_from_slice(&2u64.to_le_bytes());
        } else {
            evil.extend_from_slice(part);
        }
    }
    let a = http
        .signed_upload(&key, &upload_info("main", PATH, &evil), &evil)
        .await;
    assert_refused(&a, 400, "malformed-nar", Some("forbidden entry name"));

    // A large NAR (cut into chunks, checked as it streams) whose structure
    // breaks half way: refused as malformed, not as a broken upload.
    let files: Vec<(String, Node)> = (0..64)
        .map(|i| {
            let contents = format!("file {i}\n").repeat(2_000).into_bytes();
            (
                format!("f{i:02}"),
                Node::Regular {
                    executable: false,
                    contents,
                },
            )
        })
        .collect();
    let mut big = nar::write(&Node::Directory(files));
    assert!(big.len() > 8 * 64 * 1024, "must span several chunks");
    let token = b"entry";
    let half = big.len() / 2;
    let at = half
        + big[half..]
            .windows(token.len())
            .position(|w| w == token)
            .expect("an entry after the middle");
    big[at + 4] = b'x';
    let a = http
        .signed_upload(&key, &upload_info("main", PATH, &big), &big)
        .await;
    assert_refused(&a, 400, "malformed-nar", None);

    // Hash of other bytes.
    let mut info = upload_info("main", PATH, &good);
    info["nar_hash"] = json!(NarHash::of(b"other").to_nix_string());
    assert_refused(
        &http.signed_upload(&key, &info, &good).await,
        400,
        "nar-hash-mismatch",
        None,
    );

    // Declared bigger than sent, and smaller than sent.
    let mut info = upload_info("main", PATH, &good);
    info["nar_size"] = json!(good.len() + 8);
    assert_refused(
        &http.signed_upload(&key, &info, &good).await,
        400,
        "nar-size-mismatch",
        None,
    );
    let mut info = upload_info("main", PATH, &good);
    info["nar_size"] = json!(good.len() - 8);
    assert_refused(
        &http.signed_upload(&key, &info, &good).await,
        400,
        "nar-size-mismatch",
        None,
    );

    // Bad cache names and store paths.
    let a = http
        .signed_upload(&key, &upload_info("../etc", PATH, &good), &good)
        .await;
    assert_refused(&a, 400, "invalid-cache-name", None);
    let traversal = "/nix/store/7rjj86a15146cq1d3qy068lml7n8ykzm-../../etc/passwd";
    let a = http
        .signed_upload(&key, &upload_info("main", traversal, &good), &good)
        .await;
    assert_refused(&a, 400, "invalid-nar-info", None);
    let mut info = upload_info("main", PATH, &good);
    info["references"] = json!(["/etc/passwd"]);
    assert_refused(
        &http.signed_upload(&key, &info, &good).await,
        400,
        "invalid-nar-info",
        None,
    );
    let a = http
        .upload(None, &json!({"cache": "main"}), good.clone())
        .await;
    assert_refused(&a, 400, "invalid-nar-info", None);

    // No valid short-term signature: none, a pull-only token (it gets no
    // key), a forged token, another key's signature, a key for another cache.
    let a = http
        .upload(Some(&root), &upload_info("main", PATH, &good), good.clone())
        .await;
    assert_refused(&a, 401, "unsigned-upload", None);
    let reader = server.make_token(&["--sub", "reader", "--validity", "1h", "--pull", "main"]);
    let a = http.exchange_token(&reader, "main", &new_key()).await;
    assert_refused(&a, 403, "permission-denied", None);
    let forged = format!("{}x", &root[..root.len() - 1]);
    let a = http.exchange_token(&forged, "main", &new_key()).await;
    assert_refused(&a, 401, "invalid-token", None);
    let mut by_other_key =
        serde_json::from_value::<UploadPathNarInfo>(upload_info("main", PATH, &good)).unwrap();
    by_other_key.sign(&key.key_id, &new_key());
    let a = http
        .upload(
            None,
            &serde_json::to_value(&by_other_key).unwrap(),
            good.clone(),
        )
        .await;
    assert_refused(&a, 401, "invalid-signature", None);
    let mut tampered = key.sign(&upload_info("main", PATH, &good));
    tampered["references"] = json!(["/nix/store/g7yx0xf9rzamh5jdhd4rnmqdrcrs17zf-tree"]);
    let a = http.upload(None, &tampered, good.clone()).await;
    assert_refused(&a, 401, "invalid-signature", None);
    server.client().ok(&["cache", "create", "other"]);
    let other_key = http.key_for(&root, "other").await;
    let a = http
        .signed_upload(&other_key, &upload_info("main", PATH, &good), &good)
        .await;
    assert_refused(&a, 403, "permission-denied", None);

    assert_not_visible(&http, &root, "main").await;

    // The good upload then works and is served signed.
    let a = http
        .signed_upload(&key, &upload_info("main", PATH, &good), &good)
        .await;
    assert_eq!(a.0, 200, "{}", a.2);
    assert_eq!(a.1["outcome"], "uploaded");
    let (status, _, text) = http
        .get(&format!("/main/{HASH}.narinfo"), Some(&root))
        .await;
    assert_eq!(status, 200);
    let narinfo = NarInfo::parse(&text).unwrap();
    assert_eq!(narinfo.nar_hash, NarHash::of(&good));
    StorePath::parse(DEFAULT_STORE_DIR, &narinfo.store_path).unwrap();

    // Same path, other NAR: 409, and the first stays served.
    let other = sample_package_nar("#!/bin/sh\necho tampered\n");
    let a = http
        .signed_upload(&key, &upload_info("main", PATH, &other), &other)
        .await;
    assert_refused(&a, 409, "nar-hash-conflict", None);
    let (_, _, text) = http
        .get(&format!("/main/{HASH}.narinfo"), Some(&root))
        .await;
    assert_eq!(NarInfo::parse(&text).unwrap().nar_hash, NarHash::of(&good));
    // Same path, same NAR: idempotent.
    let a = http
        .signed_upload(&key, &upload_info("main", PATH, &good), &good)
        .await;
    assert_eq!(a.1["outcome"], "exists", "{}", a.2);
}

#[tokio::test]
async fn private_cache_does_not_leak_what_it_holds() {
    let server = TestServer::start(Backend::Sqlite);
    let root = server.root_token.clone();
    server.client().ok(&["cache", "create", "secret"]);
    let http = Http::new(&server.url);
    let key = http.key_for(&root, "secret").await;
    let nar_bytes = sample_package_nar("x");
    let a = http
        .signed_upload(&key, &upload_info("secret", PATH, &nar_bytes), &nar_bytes)
        .await;
    assert_eq!(a.0, 200, "{}", a.2);

    let absent = "/secret/0000000000000000000000000000000a.narinfo";
    let present = format!("/secret/{HASH}.narinfo");
    // Anonymous: the same answer for a held path, a missing one, and a cache that does not exist.
    let a = http.get(&present, None).await;
    let b = http.get(absent, None).await;
    assert_eq!(a.0, 401);
    assert_eq!((a.0, &a.2), (b.0, &b.2));
    let c = http.get("/secret/nix-cache-info", None).await;
    let d = http.get("/nosuchcache/nix-cache-info", None).await;
    assert_eq!(c.0, d.0);
    // A token for another cache: 404 alike for this cache and a missing one.
    let other = server.make_token(&["--sub", "o", "--validity", "1h", "--pull", "other"]);
    let e = http.get(&present, Some(&other)).await;
    let f = http.get("/nosuchcache/nix-cache-info", Some(&other)).await;
    assert_eq!((e.0, f.0), (404, 404));
    assert_eq!(e.1["code"], "no-such-cache");
    // With the right token the path is there, and a missing one is a plain 404 (never 5xx).
    assert_eq!(http.get(&present, Some(&root)).await.0, 200);
    assert_eq!(http.get(absent, Some(&root)).await.0, 404);
    assert_eq!(
        http.get(
            "/secret/nar/0000000000000000000000000000000a.nar.zst",
            Some(&root)
        )
        .await
        .0,
        404
    );
    assert_eq!(
        http.get("/secret/nar/..%2F..%2Fetc%2Fpasswd", Some(&root))
            .await
            .0,
        404
    );
}
