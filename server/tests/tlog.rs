//! The transparency log, in-process (issue 19): ledger entries integrated
//! into a cache's Merkle tree, served as c2sp.org/tlog-tiles (checkpoint,
//! hash tiles, entry bundles) and checked here as a client would: the
//! checkpoint's signature by the log's verifier key, the root recomputed
//! from the tiles, each entry decoded and its upload statement's signature
//! verified by the key the log says was certified.

mod harness;

use axum::http::StatusCode;
use harness::{statement, Harness};
use provenix_provenance::tlog::checkpoint::{self, VerifiedCheckpoint};
use provenix_provenance::tlog::entry::Entry;
use provenix_provenance::tlog::tiles::{self, TilePath};
use provenix_provenance::tlog::tree::{self, Hashes};
use provenix_provenance::tlog::Hash;
use provenix_server::maintenance::integrate;

async fn push(h: &Harness, key: &harness::UploadKey, cache: &str, n: usize) -> String {
    // n < 10: one nixbase32 digit ends the hash.
    let store_path = format!("/nix/store/{}{n}-log-{n}", "a".repeat(31));
    let nar = provenix_provenance::nar::write(&provenix_provenance::nar::Node::Regular {
        executable: false,
        contents: format!("contents {n}").into_bytes(),
    });
    let mut info = statement(cache, &store_path, &nar, None);
    key.sign(&mut info);
    let a = h.upload(&key.session, &info, nar).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    store_path
}

async fn verified(h: &Harness, cache: &str) -> VerifiedCheckpoint {
    let a = h
        .get(&format!("/{cache}/tlog/checkpoint"), Some(&h.root))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let c = h.state.db.cache_by_name(cache).await.unwrap().unwrap();
    let keys = h.state.db.log_verifier_keys(c.id).await.unwrap();
    let (origin, vkey, _) = &keys[0];
    assert_eq!(origin, &checkpoint::origin(&h.state.api_endpoint, cache));
    checkpoint::verify(&a.bytes, vkey, origin).expect("signed by the log's key")
}

async fn bytes(h: &Harness, cache: &str, path: &str) -> Vec<u8> {
    let a = h.get(&format!("/{cache}/tlog/{path}"), Some(&h.root)).await;
    assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.text);
    a.bytes
}

/// The root of a tree of `size` < 65536 entries from its level-0 and
/// level-1 tiles, as a client recomputes it.
async fn root_from_tiles(h: &Harness, cache: &str, size: u64) -> Hash {
    let mut leaves = Vec::new();
    for n in 0..size.div_ceil(256) {
        let width = (size - n * 256).min(256) as u32;
        let tile = TilePath::hash_tile(0, n, width);
        let data = bytes(h, cache, &tile.path()).await;
        assert_eq!(data.len(), width as usize * 32);
        leaves.extend(data.chunks(32).map(|c| Hash(c.try_into().unwrap())));
    }
    // Level-0 hashes are the leaves: the RFC 6962 root over them.
    fn mth(hs: &[Hash]) -> Hash {
        match hs.len() {
            1 => hs[0],
            n => {
                let k = n.next_power_of_two() / 2;
                tlog_node(mth(&hs[..k]), mth(&hs[k..]))
            }
        }
    }
    mth(&leaves)
}

fn tlog_node(l: Hash, r: Hash) -> Hash {
    use sha2::{Digest, Sha256};
    Hash(Sha256::digest([&[1u8][..], &l.0, &r.0].concat()).into())
}

#[tokio::test]
async fn uploads_and_their_keys_are_logged_and_verify_from_the_tiles_alone() {
    let h = Harness::new().await;
    h.create_cache("main", false).await;
    let key = h.exchange(&h.root, "main").await;
    let mut pushed = Vec::new();
    for n in 0..3 {
        pushed.push(push(&h, &key, "main", n).await);
    }
    // Before integration there is no checkpoint.
    h.get("/main/tlog/checkpoint", Some(&h.root))
        .await
        .assert_refused(404, "not-in-log");
    let n = integrate::integrate_all(&h.state).await.unwrap();
    assert_eq!(n, 5, "the CA, the key and three uploads");
    let cp = verified(&h, "main").await;
    assert_eq!(cp.size, 5);
    // The well-known file names the origin and the key that signed it.
    let known = h
        .get("/.well-known/provenix/tlog/main", Some(&h.root))
        .await;
    assert_eq!(known.status, StatusCode::OK, "{}", known.text);
    let mut lines = known.text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("# origin {}", cp.origin).as_str())
    );
    let vkey = lines.next().expect("a verifier key");
    checkpoint::verify(&cp.note, vkey, &cp.origin).expect("the listed key signed it");
    assert_eq!(lines.next(), None);
    assert_eq!(root_from_tiles(&h, "main", 5).await, cp.root);

    let bundle = bytes(&h, "main", "tile/entries/000.p/5").await;
    let entries = tiles::unbundle(&bundle).unwrap();
    assert_eq!(entries.len(), 5);
    let decoded: Vec<Entry> = entries.iter().map(|e| Entry::decode(e).unwrap()).collect();
    // The CA's certificate first, and the key's entry names it.
    let ca = h.state.ca().await.unwrap();
    assert_eq!(decoded[0].header.kind, "ca-certificate");
    assert_eq!(decoded[0].body, ca.cert_pem.as_bytes());
    assert_eq!(decoded[1].header.kind, "upload-key");
    assert_eq!(decoded[1].header.asserted["ca_index"], 0);
    provenix_provenance::tlog::upload_check::check_key_ca((1, &decoded[1]), (0, &decoded[0]))
        .expect("the key names the CA logged before it");
    let public_key = decoded[1].header.asserted["public_key"].as_str().unwrap();
    for (e, store_path) in decoded[2..].iter().zip(&pushed) {
        assert_eq!(e.header.kind, "upload");
        assert_eq!(e.header.asserted["store_path"], store_path.as_str());
        assert_eq!(
            e.header.asserted["key_id"],
            decoded[1].header.asserted["key_id"]
        );
        // The body is the statement the client signed, verbatim.
        let signature = e.header.asserted["signature"].as_str().unwrap();
        let public_key = provenix_provenance::exchange::decode_public_key(public_key).unwrap();
        provenix_provenance::exchange::verify(&public_key, &e.body, signature)
            .expect("the upload key signed the logged statement");
    }
    // Each entry's leaf is in the tree.
    for (i, e) in entries.iter().enumerate() {
        let wanted = tree::indexes_read_by(|hs| tree::prove_inclusion(5, i as u64, hs));
        let c = h.state.db.cache_by_name("main").await.unwrap().unwrap();
        let hashes = h.state.db.log_hashes(c.id, &wanted).await.unwrap();
        let proof = tree::prove_inclusion(5, i as u64, &hashes).unwrap();
        tree::check_record(&proof, 5, cp.root, i as u64, tree::record_hash(e)).unwrap();
    }

    // More entries: the new checkpoint is consistent with the old one.
    push(&h, &key, "main", 3).await;
    integrate::integrate_all(&h.state).await.unwrap();
    let later = verified(&h, "main").await;
    assert_eq!(later.size, 6);
    let c = h.state.db.cache_by_name("main").await.unwrap().unwrap();
    let wanted = tree::indexes_read_by(|hs| tree::prove_consistency(6, 5, hs));
    let hashes: Hashes = h.state.db.log_hashes(c.id, &wanted).await.unwrap();
    let proof = tree::prove_consistency(6, 5, &hashes).unwrap();
    tree::check_tree(&proof, 6, later.root, 5, cp.root).unwrap();
    // Nothing new: no new checkpoint.
    assert_eq!(integrate::integrate_all(&h.state).await.unwrap(), 0);
}

#[tokio::test]
async fn deletions_by_a_caller_and_by_gc_are_logged_with_the_paths_they_took() {
    use axum::http::Method;
    let h = Harness::new().await;
    h.create_cache("main", false).await;
    let key = h.exchange(&h.root, "main").await;
    let (kept, doomed, old) = (
        push(&h, &key, "main", 0).await,
        push(&h, &key, "main", 1).await,
        push(&h, &key, "main", 2).await,
    );
    let hash = &doomed["/nix/store/".len()..][..32];
    let a = h
        .call(
            Method::DELETE,
            &format!("/_api/v1/cache/main/paths/{hash}"),
            Some(&h.root),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    // A retention only the old path (last pulled long ago) is past: GC
    // expires it and keeps the other.
    let c = h.state.db.cache_by_name("main").await.unwrap().unwrap();
    let change = provenix_server::db::caches::CacheChange {
        retention_period: Some(60),
        ..Default::default()
    };
    h.state.db.update_cache(c.id, &change).await.unwrap();
    let lookup = h
        .state
        .db
        .path_lookup("main", &old["/nix/store/".len()..][..32])
        .await;
    let id = lookup.unwrap().unwrap().path.unwrap().id;
    h.state.db.touch_path(id, 1_000).await.unwrap();
    provenix_server::maintenance::gc::run_once(&h.state)
        .await
        .unwrap();
    integrate::integrate_all(&h.state).await.unwrap();
    let cp = verified(&h, "main").await;
    let bundle = bytes(&h, "main", &TilePath::bundle(0, cp.size as u32).path()).await;
    let deletions: Vec<Entry> = tiles::unbundle(&bundle)
        .unwrap()
        .iter()
        .map(|e| Entry::decode(e).unwrap())
        .filter(|e| e.header.kind == "path-deletion")
        .collect();
    assert_eq!(deletions.len(), 2, "the caller's and GC's");
    assert_eq!(deletions[0].header.asserted["reason"], "deleted");
    assert_eq!(deletions[0].header.asserted["actor"], "root");
    assert_eq!(deletions[0].body, format!("{doomed}\n").into_bytes());
    assert_eq!(deletions[1].header.asserted["reason"], "expired");
    assert_eq!(deletions[1].header.asserted["actor"], "gc");
    let expired = String::from_utf8(deletions[1].body.clone()).unwrap();
    assert!(expired.lines().any(|l| l == old), "{expired}");
    assert!(
        !expired.lines().any(|l| l == doomed || l == kept),
        "{expired}"
    );
}

#[tokio::test]
async fn tiles_the_tree_does_not_have_and_malformed_paths_are_refused() {
    let h = Harness::new().await;
    h.create_cache("main", false).await;
    let key = h.exchange(&h.root, "main").await;
    push(&h, &key, "main", 0).await;
    integrate::integrate_all(&h.state).await.unwrap();
    // Three entries: the CA, the key, the upload.
    for (path, status, code) in [
        ("tile/0/000.p/4", 404, "not-in-log"),
        ("tile/0/000", 404, "not-in-log"),
        ("tile/1/000.p/1", 404, "not-in-log"),
        ("tile/entries/000.p/4", 404, "not-in-log"),
        ("tile/0/001.p/1", 404, "not-in-log"),
        ("tile/0/0", 400, "invalid-tile-path"),
        ("tile/0/000.p/0", 400, "invalid-tile-path"),
        ("tile/0/000.p/256", 400, "invalid-tile-path"),
        ("tile/x/000", 400, "invalid-tile-path"),
        ("tile/entries/x000/001", 400, "invalid-tile-path"),
        ("tile/0/000.p/1/extra", 400, "invalid-tile-path"),
        // Percent-encoded spellings of served tiles are not those tiles.
        ("tile/0/000%2Ep%2F1", 400, "invalid-tile-path"),
        ("tile/0/000.p/%31", 400, "invalid-tile-path"),
        ("tile/0%2F000.p/1", 400, "invalid-tile-path"),
        ("tile/%ff", 400, "invalid-tile-path"),
    ] {
        h.get(&format!("/main/tlog/{path}"), Some(&h.root))
            .await
            .assert_refused(status, code);
    }
    // A narrower partial tile than the edge is served (an older checkpoint's).
    assert_eq!(bytes(&h, "main", "tile/0/000.p/1").await.len(), 32);
    assert_eq!(bytes(&h, "main", "tile/0/000.p/2").await.len(), 64);
    assert_eq!(bytes(&h, "main", "tile/0/000.p/3").await.len(), 96);
}

#[tokio::test]
async fn a_private_caches_log_answers_as_a_missing_cache_does() {
    let h = Harness::new().await;
    h.create_cache("main", false).await;
    let key = h.exchange(&h.root, "main").await;
    push(&h, &key, "main", 0).await;
    integrate::integrate_all(&h.state).await.unwrap();
    for path in [
        "checkpoint",
        "tile/0/000.p/2",
        "tile/entries/000.p/2",
        "tile/0/0",
    ] {
        let private = h.get(&format!("/main/tlog/{path}"), None).await;
        let missing = h.get(&format!("/absent/tlog/{path}"), None).await;
        assert_eq!(private.status, missing.status, "{path}");
        // The same answer, the cache's name aside.
        assert_eq!(
            private.text,
            missing.text.replace("absent", "main"),
            "{path}"
        );
        assert_ne!(private.status, StatusCode::OK);
    }
    // A public cache's log is anyone's.
    h.create_cache("open", true).await;
    let key = h.exchange(&h.root, "open").await;
    push(&h, &key, "open", 1).await;
    integrate::integrate_all(&h.state).await.unwrap();
    let a = h.get("/open/tlog/checkpoint", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
}
