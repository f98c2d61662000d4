//! Growth limits (issue 21), in-process: size limits evict the least
//! recently used paths no pin holds, per cache and for the server (where a
//! NAR two caches share counts once); pins hold a path and its closure
//! against size and retention alike; pin revisions, their history, and the
//! refusals of bad pins and limits, which change nothing.

mod harness;

use axum::http::{Method, StatusCode};
use harness::{statement, Answer, Harness, UploadKey};
use provenix_server::maintenance::gc;
use serde_json::{json, Value};

const MIB: i64 = 1 << 20;
/// Each test path's NAR: incompressible, so its stored size is about this.
const CONTENT: usize = 400_000;

/// Store path `n` (distinct hashes) and a NAR of `CONTENT` pseudo-random
/// bytes drawn from `seed`.
fn path(n: usize, seed: u64) -> (String, Vec<u8>) {
    const ALPHABET: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
    let hash: String = (0..32)
        .map(|i| match i {
            0..2 => ALPHABET[(n >> (5 * i)) & 31] as char,
            _ => ALPHABET[(i * 7) % 32] as char,
        })
        .collect();
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let contents: Vec<u8> = (0..CONTENT)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let nar = provenix_provenance::nar::write(&provenix_provenance::nar::Node::Regular {
        executable: false,
        contents,
    });
    (format!("/nix/store/{hash}-p{n}"), nar)
}

fn hash_of(store_path: &str) -> &str {
    &store_path["/nix/store/".len()..][..32]
}

async fn upload(
    h: &Harness,
    key: &UploadKey,
    cache: &str,
    (p, nar): &(String, Vec<u8>),
    refs: &[&str],
) {
    let mut info = statement(cache, p, nar, None);
    info.references = refs.iter().map(|r| r.to_string()).collect();
    key.sign(&mut info);
    let a = h.upload(&key.session, &info, nar.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
}

/// Sets when a path was last pulled, as narinfo requests do.
async fn accessed(h: &Harness, cache: &str, store_path: &str, at: i64) {
    let lookup = h
        .state
        .db
        .path_lookup(cache, hash_of(store_path))
        .await
        .unwrap()
        .unwrap();
    let id = lookup.path.expect("path in cache").id;
    h.state.db.touch_path(id, at).await.unwrap();
}

async fn status(h: &Harness, cache: &str, store_path: &str) -> u16 {
    h.get(
        &format!("/{cache}/{}.narinfo", hash_of(store_path)),
        Some(&h.root),
    )
    .await
    .status
    .as_u16()
}

async fn configure(h: &Harness, cache: &str, body: Value) -> Answer {
    h.call(
        Method::PATCH,
        &format!("/_api/v1/cache-config/{cache}"),
        Some(&h.root),
        Some(body),
    )
    .await
}

async fn pin(h: &Harness, cache: &str, name: &str, body: Value) -> Answer {
    h.call(
        Method::PUT,
        &format!("/_api/v1/cache-config/{cache}/pins/{name}"),
        Some(&h.root),
        Some(body),
    )
    .await
}

async fn limit(h: &Harness, token: &str, bytes: i64) -> Answer {
    h.call(
        Method::PATCH,
        "/_api/v1/cache-config/main",
        Some(token),
        Some(json!({ "max_stored_size": bytes })),
    )
    .await
}

async fn unpin(h: &Harness, cache: &str, name: &str) -> Answer {
    h.call(
        Method::DELETE,
        &format!("/_api/v1/cache-config/{cache}/pins/{name}"),
        Some(&h.root),
        None,
    )
    .await
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn a_cache_over_its_limit_loses_its_least_recently_used_unpinned_paths() {
    let h = Harness::new().await;
    h.create_cache("main", false).await;
    let key = h.exchange(&h.root, "main").await;
    let p: Vec<_> = (0..4).map(|n| path(n, n as u64 + 1)).collect();
    for q in &p[..3] {
        upload(&h, &key, "main", q, &[]).await;
    }
    // p3 depends on p1: pinning p3 holds p1 too.
    upload(&h, &key, "main", &p[3], &[&p[1].0]).await;
    let t = now();
    // Least recently used first: p1, p2, p0, p3.
    for (q, ago) in [(&p[1], 300), (&p[2], 100), (&p[0], 50), (&p[3], 0)] {
        accessed(&h, "main", &q.0, t - ago).await;
    }

    // Under the limit, nothing goes.
    let a = configure(&h, "main", json!({ "max_stored_size": 10 * MIB })).await;
    assert_eq!(a.json["max_stored_size"], 10 * MIB, "{}", a.text);
    let r = gc::run_once(&h.state).await.unwrap();
    assert_eq!((r.evicted_paths, r.evictions.len()), (0, 0), "{r:?}");

    let a = pin(&h, "main", "release", json!({ "store_path": p[3].0 })).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    configure(&h, "main", json!({ "max_stored_size": MIB })).await;
    let r = gc::run_once(&h.state).await.unwrap();
    // 1.6 MB over a 1 MiB limit: the oldest, p1, is pinned (p3's closure),
    // so p2 and then p0 go, and 0.8 MB is left.
    assert_eq!(r.pinned_paths, 2, "{r:?}");
    assert_eq!(r.evicted_paths, 2, "{r:?}");
    assert_eq!(h.state.metrics.gc_evicted_paths.get(), 2);
    let e = &r.evictions[0];
    assert_eq!(e.cache.as_deref(), Some("main"));
    assert_eq!(e.paths, vec![p[2].0.clone(), p[0].0.clone()]);
    assert!(
        e.size_before > 4 * CONTENT as i64 && e.size_before - e.evicted_bytes <= MIB,
        "{e:?}"
    );
    assert_eq!(e.still_over, 0);
    for (q, expect) in [(&p[0], 404), (&p[1], 200), (&p[2], 404), (&p[3], 200)] {
        assert_eq!(status(&h, "main", &q.0).await, expect, "{}", q.0);
    }

    // With everything pinned, a limit below what pins hold evicts nothing
    // and says how far over the cache stays.
    // (Below the API's 1 MiB floor, set in the database: what is left,
    // 0.8 MB, is all pinned.)
    pin(&h, "main", "lib", json!({ "store_path": p[1].0 })).await;
    let change = provenix_server::db::caches::CacheChange {
        max_stored_size: Some(MIB / 2),
        ..Default::default()
    };
    h.state.db.update_cache(1, &change).await.unwrap();
    let r = gc::run_once(&h.state).await.unwrap();
    assert_eq!(r.evicted_paths, 0, "{r:?}");
    assert!(r.evictions[0].still_over > 0, "{r:?}");

    // Removing the limit: the server's (none here) applies again.
    let a = configure(&h, "main", json!({ "reset_max_stored_size": true })).await;
    assert_eq!(a.json["max_stored_size"], Value::Null, "{}", a.text);
}

#[tokio::test]
async fn the_server_limit_counts_a_shared_nar_once() {
    let h = Harness::with_config(|c| c.garbage_collection.max_stored_size = Some(MIB)).await;
    h.create_cache("a", false).await;
    h.create_cache("b", false).await;
    let ka = h.exchange(&h.root, "a").await;
    let kb = h.exchange(&h.root, "b").await;
    let shared = path(0, 1);
    let (u, v) = (path(1, 2), path(2, 3));
    upload(&h, &ka, "a", &shared, &[]).await;
    upload(&h, &ka, "a", &u, &[]).await;
    upload(&h, &kb, "b", &shared, &[]).await;
    upload(&h, &kb, "b", &v, &[]).await;
    let t = now();
    for (cache, q, ago) in [
        ("a", &shared, 40),
        ("a", &u, 30),
        ("b", &shared, 20),
        ("b", &v, 10),
    ] {
        accessed(&h, cache, &q.0, t - ago).await;
    }
    let r = gc::run_once(&h.state).await.unwrap();
    // Three NARs (1.2 MB) over 1 MiB. Evicting a's copy of the shared path
    // frees nothing (b holds its NAR), so u goes too, and then it is under.
    assert_eq!(r.evicted_paths, 2, "{r:?}");
    let e = &r.evictions[0];
    assert_eq!(e.cache, None);
    assert_eq!(e.paths, vec![shared.0.clone(), u.0.clone()]);
    assert!(
        (CONTENT as i64..CONTENT as i64 + 4096).contains(&e.evicted_bytes),
        "{e:?}"
    );
    assert_eq!(status(&h, "a", &shared.0).await, 404);
    assert_eq!(status(&h, "a", &u.0).await, 404);
    assert_eq!(status(&h, "b", &shared.0).await, 200);
    assert_eq!(status(&h, "b", &v.0).await, 200);
    assert_eq!(r.deleted_nars, 1, "{r:?}");
}

#[tokio::test]
async fn retention_spares_a_pinned_closure_until_the_pin_goes() {
    let h = Harness::new().await;
    h.create_cache("main", false).await;
    let key = h.exchange(&h.root, "main").await;
    let p: Vec<_> = (0..3).map(|n| path(n, n as u64 + 7)).collect();
    upload(&h, &key, "main", &p[0], &[]).await;
    upload(&h, &key, "main", &p[1], &[&p[0].0]).await;
    upload(&h, &key, "main", &p[2], &[]).await;
    let long_ago = now() - 10 * 86400;
    for q in &p {
        accessed(&h, "main", &q.0, long_ago).await;
    }
    pin(&h, "main", "app", json!({ "store_path": p[1].0 })).await;
    // A GC pass that looked before the pin was made still cannot delete
    // the pinned path: its deletion checks pins itself.
    let pinned_id = h
        .state
        .db
        .path_lookup("main", hash_of(&p[1].0))
        .await
        .unwrap()
        .unwrap()
        .path
        .unwrap()
        .id;
    assert_eq!(
        h.state
            .db
            .delete_unpinned_paths(&[pinned_id], "expired")
            .await
            .unwrap(),
        0
    );
    configure(&h, "main", json!({ "retention_period": 86400 })).await;
    let r = gc::run_once(&h.state).await.unwrap();
    assert_eq!((r.expired_paths, r.pinned_paths), (1, 2), "{r:?}");
    assert_eq!(status(&h, "main", &p[0].0).await, 200);
    assert_eq!(status(&h, "main", &p[1].0).await, 200);
    assert_eq!(status(&h, "main", &p[2].0).await, 404);

    let a = unpin(&h, "main", "app").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    // The narinfo requests above counted as pulls (recorded off the request
    // path, so let those writes land first): age them again.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for q in &p[..2] {
        accessed(&h, "main", &q.0, long_ago).await;
    }
    let r = gc::run_once(&h.state).await.unwrap();
    assert_eq!((r.expired_paths, r.pinned_paths), (2, 0), "{r:?}");
    assert_eq!(status(&h, "main", &p[1].0).await, 404);
}

#[tokio::test]
async fn pins_keep_revisions_record_who_changed_them_and_refuse_bad_input() {
    let h = Harness::new().await;
    h.create_cache("main", true).await;
    let key = h.exchange(&h.root, "main").await;
    let p: Vec<_> = (0..3).map(|n| path(n, n as u64 + 20)).collect();
    for q in &p {
        upload(&h, &key, "main", q, &[]).await;
    }
    for q in &p {
        let a = pin(
            &h,
            "main",
            "nightly",
            json!({ "store_path": q.0, "keep_revisions": 2 }),
        )
        .await;
        assert_eq!(a.json["changed"], true, "{}", a.text);
    }
    let a = h.get("/_api/v1/cache-config/main/pins", None).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "anyone who can read a public cache sees its pins"
    );
    let revisions: Vec<(i64, String)> = a.json[0]["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["revision"].as_i64().unwrap(),
                r["store_path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(revisions, vec![(3, p[2].0.clone()), (2, p[1].0.clone())]);

    // The same path again changes nothing and records nothing.
    let a = pin(
        &h,
        "main",
        "nightly",
        json!({ "store_path": p[2].0, "keep_revisions": 2 }),
    )
    .await;
    assert_eq!(a.json["changed"], false, "{}", a.text);

    let before = h.get("/_api/v1/cache-config/main/pins", None).await.json;
    for (name, body, code) in [
        (
            "nightly",
            json!({ "store_path": p[0].0, "keep_revisions": 0 }),
            "invalid-pin",
        ),
        ("-x", json!({ "store_path": p[0].0 }), "invalid-pin"),
        (
            "nightly",
            json!({ "store_path": "/nix/store/00000000000000000000000000000000-gone" }),
            "no-such-path",
        ),
        (
            "nightly",
            json!({ "store_path": "/elsewhere/x" }),
            "invalid-store-path",
        ),
        (
            "nightly",
            json!({ "store_path": p[0].0, "keep": 3 }),
            "invalid-request",
        ),
    ] {
        let a = pin(&h, "main", name, body).await;
        a.assert_refused(if code == "no-such-path" { 404 } else { 400 }, code);
    }
    let a = configure(&h, "main", json!({ "max_stored_size": 5 })).await;
    a.assert_refused(400, "invalid-max-stored-size");
    let info = h.get("/_api/v1/cache-config/main", Some(&h.root)).await;
    assert_eq!(
        info.json["max_stored_size"],
        Value::Null,
        "a refusal changes nothing"
    );
    assert_eq!(
        h.get("/_api/v1/cache-config/main/pins", None).await.json,
        before
    );

    // A size limit below what the cache holds is a deletion: retention
    // alone may not set it; above it, it may.
    let retention = h.token(
        "ret",
        "main",
        harness::perm(|p| {
            p.configure_cache_retention = true;
            p.pull = true
        }),
    );
    let a = limit(&h, &retention, MIB).await;
    a.assert_refused(403, "permission-denied");
    let a = limit(&h, &retention, 10 * MIB).await;
    assert_eq!(a.json["max_stored_size"], 10 * MIB, "{}", a.text);
    configure(&h, "main", json!({ "reset_max_stored_size": true })).await;

    // Pinning needs configure-retention: a pusher may not.
    let pusher = h.token("bob", "main", harness::perm(|p| p.push = true));
    let a = h
        .call(
            Method::PUT,
            "/_api/v1/cache-config/main/pins/mine",
            Some(&pusher),
            Some(json!({ "store_path": p[0].0 })),
        )
        .await;
    a.assert_refused(403, "permission-denied");

    let a = unpin(&h, "main", "nightly").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = unpin(&h, "main", "nightly").await;
    a.assert_refused(404, "no-such-pin");

    // Every change, with who made it and what it released, newest first.
    let a = h
        .get("/_api/v1/cache/main/pin-changes", Some(&h.root))
        .await;
    let changes = a.json.as_array().unwrap();
    let summary: Vec<(&str, Option<&str>, usize)> = changes
        .iter()
        .map(|c| {
            assert_eq!(c["actor"], "root");
            (
                c["action"].as_str().unwrap(),
                c["store_path"].as_str(),
                c["dropped"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("remove", None, 2),
            ("pin", Some(p[2].0.as_str()), 1),
            ("pin", Some(p[1].0.as_str()), 0),
            ("pin", Some(p[0].0.as_str()), 0),
        ]
    );
    // Paged by id: nothing is out of reach behind newer changes.
    let oldest_first_page = changes[1]["id"].as_i64().unwrap();
    let a = h
        .get(
            &format!("/_api/v1/cache/main/pin-changes?limit=1&before={oldest_first_page}"),
            Some(&h.root),
        )
        .await;
    assert_eq!(a.json[0]["id"], changes[2]["id"], "{}", a.text);
    // History is provenance: not for anonymous readers of a public cache.
    let a = h.get("/_api/v1/cache/main/pin-changes", None).await;
    assert!(!a.status.is_success(), "{}", a.text);
}
