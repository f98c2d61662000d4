//! Closure statements (issue 18), in-process: one signed statement vouches
//! for every path of a push the cache holds; what it vouches for is readable
//! and verifiable from the record alone; every refusal records nothing; and
//! revoking a vouching push keeps paths someone else uploaded.

mod harness;

use axum::http::{Method, StatusCode};
use harness::{perm, statement, Answer, Harness, UploadKey};
use provenix_provenance::closure::{metadata_digest, ClosureStatement, VouchedPath};
use provenix_provenance::NarHash;
use serde_json::json;

/// A store path of `n` (distinct hashes) and its NAR.
fn path(n: usize) -> (String, Vec<u8>) {
    const ALPHABET: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
    // n in base 32, then filler: distinct for every n below 32^4.
    let hash: String = (0..32)
        .map(|i| match i {
            0..4 => ALPHABET[(n >> (5 * i)) & 31] as char,
            _ => ALPHABET[i % 32] as char,
        })
        .collect();
    let nar = provenix_provenance::nar::write(&provenix_provenance::nar::Node::Regular {
        executable: false,
        contents: format!("contents of path {n}").into_bytes(),
    });
    (format!("/nix/store/{hash}-p{n}"), nar)
}

fn hash_of(store_path: &str) -> &str {
    &store_path["/nix/store/".len()..][..32]
}

async fn upload_all(h: &Harness, key: &UploadKey, paths: &[(String, Vec<u8>)]) {
    for (p, nar) in paths {
        let mut info = statement("main", p, nar, None);
        key.sign(&mut info);
        let a = h.upload(&key.session, &info, nar.clone()).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    }
}

fn closure(cache: &str, paths: &[(String, Vec<u8>)]) -> ClosureStatement {
    ClosureStatement {
        cache: cache.into(),
        paths: paths
            .iter()
            .map(|(p, nar)| VouchedPath {
                store_path: p.clone(),
                nar_hash: NarHash::of(nar),
                nar_size: nar.len() as u64,
                // As uploaded by `upload_all`: no references, deriver or CA.
                metadata: metadata_digest(&[], None, None),
            })
            .collect(),
        key_id: None,
        nonce: None,
        signature: None,
    }
}

fn signed(key: &UploadKey, mut st: ClosureStatement) -> ClosureStatement {
    st.sign(&key.key_id, &key.key);
    st
}

/// Sent with no credential: the signature is the authority, as for uploads.
async fn send(h: &Harness, st: &ClosureStatement) -> Answer {
    h.call(
        Method::POST,
        "/_api/v1/closure-statements",
        None,
        Some(serde_json::to_value(st).unwrap()),
    )
    .await
}

async fn closure_records(h: &Harness) -> usize {
    let a = h
        .get("/_api/v1/cache/main/closure-statements", Some(&h.root))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.json["items"].as_array().unwrap().len()
}

/// A second pusher's key (another subject than the uploader's).
async fn pusher(h: &Harness, name: &str, cache: &str) -> UploadKey {
    let token = h.token(
        name,
        cache,
        perm(|p| {
            p.push = true;
            p.pull = true;
        }),
    );
    h.exchange(&token, cache).await
}

#[tokio::test]
async fn one_statement_vouches_for_every_held_path_and_reads_back_verifiable() {
    let h = Harness::new().await;
    h.create_cache("main", true).await;
    let alice = h.exchange(&h.root, "main").await;
    let paths: Vec<_> = (0..6).map(path).collect();
    upload_all(&h, &alice, &paths[..5]).await;

    let bob = pusher(&h, "bob", "main").await;
    // A statement listing a path the cache lacks is not kept (its text
    // would hold lines that vouch for nothing): the answer names it, and
    // the client vouches again for the rest.
    let a = send(&h, &signed(&bob, closure("main", &paths))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["vouched"], 0, "{}", a.text);
    assert_eq!(a.json["missing"], json!([paths[5].0]), "{}", a.text);
    assert_eq!(closure_records(&h).await, 0);
    let st = signed(&bob, closure("main", &paths[..5]));
    let a = send(&h, &st).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["vouched"], 5, "{}", a.text);
    assert_eq!(a.json["missing"], json!([]), "{}", a.text);

    // The path's provenance: alice's upload and bob's statement, whose text
    // and signature verify with bob's key and list the path as stored.
    let p = h
        .get(
            &format!("/_api/v1/cache/main/provenance/{}", hash_of(&paths[2].0)),
            Some(&h.root),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert_eq!(p.json["uploads"].as_array().unwrap().len(), 1, "{}", p.text);
    let closures = p.json["closures"].as_array().unwrap();
    assert_eq!(closures.len(), 1, "{}", p.text);
    let rec = &closures[0];
    assert_eq!(rec["key"]["subject"], "bob");
    assert_eq!(rec["paths"], 5);
    let text = rec["statement"].as_str().unwrap();
    provenix_provenance::exchange::verify(
        &bob.key.verifying_key(),
        text.as_bytes(),
        rec["signature"].as_str().unwrap(),
    )
    .expect("the record's signature verifies over its text");
    let read = ClosureStatement::parse(text).expect("canonical text");
    let entry = read.entry(&paths[2].0).expect("the path is listed");
    assert_eq!(entry.nar_hash, NarHash::of(&paths[2].1));

    // The path it did not hold has no record from it; the cache lists it once.
    let p = h
        .get(
            &format!("/_api/v1/cache/main/provenance/{}", hash_of(&paths[5].0)),
            Some(&h.root),
        )
        .await;
    p.assert_refused(404, "no-provenance");
    assert_eq!(closure_records(&h).await, 1);

    // Vouching for nothing held records nothing.
    let none = signed(&bob, closure("main", &paths[5..]));
    let a = send(&h, &none).await;
    assert_eq!(a.json["vouched"], 0, "{}", a.text);
    assert_eq!(closure_records(&h).await, 1);

    // The metadata digest in the record's text matches the path as stored.
    assert_eq!(entry.metadata, metadata_digest(&[], None, None));
}

#[tokio::test]
async fn refused_statements_record_nothing() {
    let h = Harness::new().await;
    h.create_cache("main", true).await;
    h.create_cache("other", true).await;
    let alice = h.exchange(&h.root, "main").await;
    let paths: Vec<_> = (0..3).map(path).collect();
    upload_all(&h, &alice, &paths).await;
    let bob = pusher(&h, "bob", "main").await;

    // A path with another NAR hash than the cache holds: refused, and kept
    // as a divergence (who claimed another build), as an upload's is.
    let divergences = || async {
        h.get("/_api/v1/cache/main/divergences", Some(&h.root))
            .await
            .json["items"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let mut other_hash = closure("main", &paths);
    other_hash.paths[1].nar_hash = NarHash::of(b"another build");
    let a = send(&h, &signed(&bob, other_hash)).await;
    a.assert_refused(409, "nar-hash-conflict");
    assert!(a.text.contains(&paths[1].0), "{}", a.text);
    // The stored hash is not named: a pusher may not be able to read it.
    let stored = NarHash::of(&paths[1].1).to_nix_string();
    assert!(!a.text.contains(&stored), "{}", a.text);
    assert_eq!(divergences().await, 1);
    // Another size, or other references: refused, nothing recorded.
    let mut other_size = closure("main", &paths);
    other_size.paths[0].nar_size += 8;
    let a = send(&h, &signed(&bob, other_size)).await;
    a.assert_refused(409, "statement-mismatch");
    assert!(
        !a.text.contains(&paths[0].1.len().to_string()),
        "{}",
        a.text
    );
    let mut other_refs = closure("main", &paths);
    other_refs.paths[2].metadata =
        metadata_digest(&["0123456789abcdfghijklmnpqrsvwxyz-dep".into()], None, None);
    send(&h, &signed(&bob, other_refs))
        .await
        .assert_refused(409, "statement-mismatch");
    assert_eq!(divergences().await, 1);

    // Signed by a key certified for another cache.
    let elsewhere = pusher(&h, "carol", "other").await;
    send(&h, &signed(&elsewhere, closure("main", &paths)))
        .await
        .assert_refused(403, "permission-denied");
    // A statement for another cache the key is not certified for, either way.
    send(&h, &signed(&bob, closure("other", &paths)))
        .await
        .assert_refused(403, "permission-denied");

    // Changed after signing; unsigned; out of order (signed as such).
    let mut tampered = signed(&bob, closure("main", &paths));
    tampered.paths.pop();
    send(&h, &tampered)
        .await
        .assert_refused(401, "invalid-signature");
    send(&h, &closure("main", &paths))
        .await
        .assert_refused(401, "unsigned-upload");
    let mut unsorted = signed(&bob, closure("main", &paths));
    unsorted.paths.reverse();
    unsorted.signature = Some(provenix_provenance::exchange::sign(
        &bob.key,
        &unsorted.statement(),
    ));
    send(&h, &unsorted)
        .await
        .assert_refused(400, "invalid-closure-statement");
    assert_eq!(closure_records(&h).await, 0);

    // Accepted once; the same statement again is a replay.
    let once = signed(&bob, closure("main", &paths));
    assert_eq!(send(&h, &once).await.status, StatusCode::OK);
    send(&h, &once)
        .await
        .assert_refused(409, "statement-replayed");
    assert_eq!(closure_records(&h).await, 1);

    // Signed by a revoked key.
    let a = h
        .call(
            Method::POST,
            "/_api/v1/revoke",
            Some(&h.root),
            Some(json!({ "cache": "main", "key": bob.key_id, "reason": "leaked" })),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    send(&h, &signed(&bob, closure("main", &paths)))
        .await
        .assert_refused(401, "key-revoked");
    assert_eq!(closure_records(&h).await, 1);
}

#[tokio::test]
async fn a_statement_signed_by_an_expired_key_is_refused() {
    let h = Harness::with_config(|c| {
        c.signing_keys.lifetime = std::time::Duration::from_secs(1);
        c.signing_keys.completion_grace = std::time::Duration::ZERO;
    })
    .await;
    h.create_cache("main", true).await;
    let alice = h.exchange(&h.root, "main").await;
    let paths: Vec<_> = (0..2).map(path).collect();
    upload_all(&h, &alice, &paths).await;
    let bob = pusher(&h, "bob", "main").await;
    let st = signed(&bob, closure("main", &paths));
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    send(&h, &st).await.assert_refused(401, "key-expired");
    assert_eq!(closure_records(&h).await, 0);
}

/// A push that vouched for many paths is revoked with its key: the paths
/// stay while another record holds them, and go with the last one.
#[tokio::test]
async fn revoking_a_vouching_push_keeps_what_others_uploaded() {
    let h = Harness::new().await;
    h.create_cache("main", true).await;
    let alice = h.exchange(&h.root, "main").await;
    let paths: Vec<_> = (0..40).map(path).collect();
    upload_all(&h, &alice, &paths).await;
    let bob = pusher(&h, "bob", "main").await;
    let a = send(&h, &signed(&bob, closure("main", &paths))).await;
    assert_eq!(a.json["vouched"], 40, "{}", a.text);

    let revoke = |key: &str| {
        let h = &h;
        h.call(
            Method::POST,
            "/_api/v1/revoke",
            Some(&h.root),
            Some(json!({ "cache": "main", "key": key, "reason": "compromised runner" })),
        )
    };
    let h = &h;
    let served = |p: &str| {
        let uri = format!("/main/{}.narinfo", hash_of(p));
        async move { h.get(&uri, None).await.status }
    };

    // Alice's uploads revoked: bob's statement still vouches for each path.
    let a = revoke(&alice.key_id).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["paths"].as_array().unwrap().len(), 0, "{}", a.text);
    for (p, _) in &paths {
        assert_eq!(served(p).await, StatusCode::OK, "{p}");
    }
    // Bob's too: nothing holds them any more.
    let a = revoke(&bob.key_id).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["paths"].as_array().unwrap().len(), 40, "{}", a.text);
    for (p, _) in &paths {
        assert_eq!(served(p).await, StatusCode::NOT_FOUND, "{p}");
    }
    // The record stays, marked through its key.
    let a = h
        .get("/_api/v1/cache/main/closure-statements", Some(&h.root))
        .await;
    let rec = &a.json["items"][0];
    assert_eq!(rec["key"]["status"], "revoked", "{}", a.text);
    assert_eq!(rec["key"]["revocation"]["reason"], "compromised runner");
}

/// get-missing-paths with NAR hashes says which missing paths' NARs the
/// server holds for this caller (so the client skips `existing-nar` for the
/// rest), under the proof-of-possession rule: a NAR only a private cache
/// holds is not disclosed to a pusher who cannot read that cache.
#[tokio::test]
async fn missing_paths_say_which_nars_the_caller_holds_and_no_more() {
    let h = Harness::new().await;
    h.create_cache("public", true).await;
    h.create_cache("secret", false).await;
    h.create_cache("main", true).await;
    let paths: Vec<_> = (0..3).map(path).collect();
    for (cache, (p, nar)) in [("public", &paths[0]), ("secret", &paths[1])] {
        let key = h.exchange(&h.root, cache).await;
        let mut info = statement(cache, p, nar, None);
        key.sign(&mut info);
        let a = h.upload(&key.session, &info, nar.clone()).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    }
    // A pusher of main who reads neither "secret" nor any private cache.
    let pusher = h.token("bob", "main", perm(|p| p.push = true));
    let ask = |nar_hashes: Vec<String>| {
        let body = json!({
            "cache": "main",
            "store_path_hashes": paths.iter().map(|(p, _)| hash_of(p)).collect::<Vec<_>>(),
            "nar_hashes": nar_hashes,
        });
        let (h, pusher) = (&h, &pusher);
        async move {
            h.call(
                Method::POST,
                "/_api/v1/get-missing-paths",
                Some(pusher),
                Some(body),
            )
            .await
        }
    };
    let hashes: Vec<String> = paths
        .iter()
        .map(|(_, nar)| NarHash::of(nar).to_nix_string())
        .collect();
    let a = ask(hashes.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["missing_paths"].as_array().unwrap().len(), 3);
    assert_eq!(
        a.json["nars_held"],
        json!([hash_of(&paths[0].0)]),
        "{}",
        a.text
    );
    // Root reads "secret": both held NARs are disclosed to it.
    let body = json!({
        "cache": "main",
        "store_path_hashes": paths.iter().map(|(p, _)| hash_of(p)).collect::<Vec<_>>(),
        "nar_hashes": hashes,
    });
    let a = h
        .call(
            Method::POST,
            "/_api/v1/get-missing-paths",
            Some(&h.root),
            Some(body),
        )
        .await;
    let mut held: Vec<String> = serde_json::from_value(a.json["nars_held"].clone()).unwrap();
    held.sort();
    let mut expected = vec![
        hash_of(&paths[0].0).to_string(),
        hash_of(&paths[1].0).to_string(),
    ];
    expected.sort();
    assert_eq!(held, expected, "{}", a.text);
    // One NAR hash per store path hash, or a clear refusal.
    ask(vec![NarHash::of(b"x").to_nix_string()])
        .await
        .assert_refused(400, "invalid-nar-info");
}

/// The attack a vouch for the NAR alone allowed: a builder uploads the
/// genuine NAR with references of its own choosing; an honest push's
/// closure statement, naming the references it built with, is refused
/// instead of vouching for the forged ones, so revoking the forger's key
/// removes the path.
#[tokio::test]
async fn a_vouch_cannot_keep_a_revoked_uploaders_forged_references_served() {
    let h = Harness::new().await;
    h.create_cache("main", true).await;
    let mallory = h.exchange(&h.root, "main").await;
    let (dep, dep_nar) = path(1);
    let (app, app_nar) = path(2);
    upload_all(&h, &mallory, &[(dep.clone(), dep_nar)]).await;
    let mut forged = statement("main", &app, &app_nar, None);
    forged.references = vec![dep.clone()];
    mallory.sign(&mut forged);
    let a = h.upload(&mallory.session, &forged, app_nar.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);

    let bob = pusher(&h, "bob", "main").await;
    let honest = closure("main", &[(app.clone(), app_nar)]);
    send(&h, &signed(&bob, honest))
        .await
        .assert_refused(409, "statement-mismatch");

    let a = h
        .call(
            Method::POST,
            "/_api/v1/revoke",
            Some(&h.root),
            Some(json!({ "cache": "main", "key": mallory.key_id, "reason": "forged" })),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    for p in [&app, &dep] {
        let answer = h.get(&format!("/main/{}.narinfo", hash_of(p)), None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{p} still served");
    }
}
