//! Fast tier, database layer on SQLite: the ledger numbers every entry of
//! a cache's history (keys, uploads, witnesses, divergences, revocations)
//! 1, 2, 3, ... in commit order, per cache, with no gap left by a refused or
//! rolled-back write; and the commit's outcomes.

use provenix_provenance::revocation::RevokeRequest;
use provenix_provenance::SecretKey;
use provenix_server::db::caches::NewCache;
use provenix_server::db::commit::{CommitOutcome, NewPath, SignedStatement};
use provenix_server::db::ledger::LedgerEntry;
use provenix_server::db::upload_keys::{NewUploadKey, SpentToken, UploadKeyRecorded};
use provenix_server::db::Db;

/// A fresh PostgreSQL database, when `PROVENIX_TEST_POSTGRES_URL` names a
/// server (scripts/test-all.sh starts one).
async fn postgres() -> Option<Db> {
    use sqlx::Executor;
    let admin = std::env::var("PROVENIX_TEST_POSTGRES_URL").ok()?;
    sqlx::any::install_default_drivers();
    let name = format!(
        "provenix_ledger_{}_{}",
        std::process::id(),
        rand::random::<u32>()
    );
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .expect("PostgreSQL");
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create database");
    let (base, _) = admin.rsplit_once('/').expect("URL with a database");
    let db = Db::connect(&format!("{base}/{name}"))
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    Some(db)
}

async fn database() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/db.sqlite?mode=rwc", dir.path().display());
    let db = Db::connect(&url).await.expect("connect");
    db.migrate().await.expect("migrate");
    (db, dir)
}

async fn cache(db: &Db, name: &str) -> i64 {
    let key = SecretKey::generate(&format!("{name}-1")).expect("key");
    db.create_cache(NewCache {
        name,
        is_public: false,
        priority: 41,
        store_dir: "/nix/store",
        upstream_cache_key_names: &[],
        retention_period: None,
        max_stored_size: None,
        key: &key,
        log_origin: &format!("cache.example.org/{name}/tlog"),
    })
    .await
    .expect("create")
    .expect("new name")
    .id
}

/// Certifies an upload key for `cache_id`; returns its row id.
async fn upload_key(db: &Db, cache_id: i64, key_id: &str, jti: Option<&str>) -> UploadKeyRecorded {
    let claims = serde_json::Map::new();
    db.record_upload_key(
        &NewUploadKey {
            key_id,
            public_key: &format!("pk-{key_id}"),
            cache_id,
            kind: "token",
            issuer: "https://cache.example/",
            subject: "alice",
            publisher_id: None,
            claims: &claims,
            certificate: "PEM",
            ca_certificate: "CA PEM",
            not_before: 0,
            not_after: i64::MAX,
        },
        jti.map(|jti| SpentToken {
            issuer: "https://issuer.example",
            jti,
            expires_at: i64::MAX,
        }),
    )
    .await
    .expect("record key")
}

fn path(cache_id: i64, key_row: i64, hash_part: char, nar_hash: &str) -> NewPath {
    let hash: String = std::iter::repeat_n(hash_part, 32).collect();
    NewPath {
        cache_id,
        store_path: format!("/nix/store/{hash}-x"),
        store_path_hash: hash,
        nar_hash: nar_hash.into(),
        nar_size: 0,
        refs: vec![],
        deriver: None,
        ca: None,
        signed: SignedStatement {
            upload_key_row: key_row,
            statement: "statement".into(),
            signature: "sig".into(),
            // Each call is a statement of its own, as each signing is.
            nonce: format!(
                "nonce-{}",
                NONCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
            remember_until: i64::MAX,
        },
    }
}

static NONCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn kinds(entries: &[LedgerEntry]) -> Vec<(i64, &str)> {
    entries.iter().map(|e| (e.seq, e.kind.as_str())).collect()
}

#[tokio::test]
async fn every_entry_of_a_cache_is_numbered_in_commit_order_without_gaps() {
    let (db, _dir) = database().await;
    let a = cache(&db, "a").await;
    let b = cache(&db, "b").await;
    assert_eq!(
        upload_key(&db, a, "k1", Some("jti-1")).await,
        UploadKeyRecorded::Recorded
    );
    // A replayed token and a reused key write nothing, so take no number.
    assert_eq!(
        upload_key(&db, a, "k2", Some("jti-1")).await,
        UploadKeyRecorded::TokenReused
    );
    assert_eq!(
        upload_key(&db, a, "k1", None).await,
        UploadKeyRecorded::KeyReused
    );
    assert_eq!(
        upload_key(&db, b, "kb", None).await,
        UploadKeyRecorded::Recorded
    );
    let k1 = db.upload_key_by_id("k1").await.unwrap().expect("k1").id;

    let p = path(a, k1, 'a', "sha256:one");
    assert_eq!(
        db.commit_upload(&p, "zstd", &[]).await.unwrap(),
        CommitOutcome::Created
    );
    // The same path and NAR again: another witness, recorded before any NAR is read.
    assert_eq!(
        db.record_if_present(&path(a, k1, 'a', "sha256:one"))
            .await
            .unwrap(),
        Some(CommitOutcome::AlreadyPresent)
    );
    // The first statement again, by any route: a replay, refused, unnumbered.
    assert!(matches!(
        db.record_if_present(&p).await,
        Err(provenix_server::db::DbError::StatementReplayed)
    ));
    assert!(matches!(
        db.commit_upload(&p, "zstd", &[]).await,
        Err(provenix_server::db::DbError::StatementReplayed)
    ));
    // Another NAR for it: a divergence.
    let other = path(a, k1, 'a', "sha256:two");
    assert!(matches!(
        db.commit_upload(&other, "zstd", &[]).await.unwrap(),
        CommitOutcome::Conflict { .. }
    ));
    // A path not in the cache: nothing is recorded.
    assert_eq!(
        db.record_if_present(&path(a, k1, 'b', "sha256:x"))
            .await
            .unwrap(),
        None
    );

    // A dry run changes nothing, a real revocation is one entry per cache it touched.
    let mut req = RevokeRequest {
        cache: Some("a".into()),
        reason: "test".into(),
        dry_run: true,
        ..Default::default()
    };
    let dry = db.revoke(&req, &[a], "admin").await.unwrap();
    assert_eq!(dry.keys, vec!["k1".to_string()]);
    req.dry_run = false;
    let done = db.revoke(&req, &[a], "admin").await.unwrap();
    let revocation = done.revocation_id.expect("a revocation");
    assert_eq!(done.paths.len(), 1, "the path's only record was revoked");

    // A pin change, and a re-pin that changes nothing (unnumbered).
    let pin = provenix_server::db::pins::NewPin {
        cache_id: a,
        name: "release",
        store_path: "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-p",
        store_path_hash: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        keep_revisions: 1,
        actor: "admin",
    };
    use provenix_server::db::pins::PinOutcome;
    assert_eq!(db.pin(&pin).await.unwrap(), PinOutcome::Pinned);
    assert_eq!(db.pin(&pin).await.unwrap(), PinOutcome::Unchanged);

    // A path deleted by a caller; deleting it again finds nothing, unnumbered.
    assert_eq!(
        upload_key(&db, a, "k3", None).await,
        UploadKeyRecorded::Recorded
    );
    let k3 = db.upload_key_by_id("k3").await.unwrap().expect("k3").id;
    let c = path(a, k3, 'c', "sha256:three");
    assert_eq!(
        db.commit_upload(&c, "zstd", &[]).await.unwrap(),
        CommitOutcome::Created
    );
    assert!(db
        .delete_path(a, &c.store_path_hash, "admin")
        .await
        .unwrap());
    assert!(!db
        .delete_path(a, &c.store_path_hash, "admin")
        .await
        .unwrap());

    let log = db.ledger_entries(a, 1, 100).await.unwrap();
    assert_eq!(
        kinds(&log),
        vec![
            // The CA first, once per cache: its keys' entries name it.
            (1, "ca-certificate"),
            (2, "upload-key"),
            (3, "upload"),
            (4, "upload"),
            (5, "divergence"),
            (6, "revocation"),
            (7, "pin-change"),
            (8, "upload-key"),
            (9, "upload"),
            (10, "path-deletion"),
        ]
    );
    assert_eq!(log[5].record_id, revocation);
    assert_eq!(
        kinds(&db.ledger_entries(b, 1, 100).await.unwrap()),
        vec![(1, "ca-certificate"), (2, "upload-key")]
    );
    // Paging from a number.
    assert_eq!(
        kinds(&db.ledger_entries(a, 5, 1).await.unwrap()),
        vec![(5, "divergence")]
    );
}

#[tokio::test]
async fn a_revoked_key_commits_nothing_and_takes_no_number() {
    let (db, _dir) = database().await;
    let a = cache(&db, "a").await;
    upload_key(&db, a, "k1", None).await;
    let k1 = db.upload_key_by_id("k1").await.unwrap().expect("k1").id;
    let req = RevokeRequest {
        identity: provenix_provenance::audit::IdentitySelector {
            key: Some("k1".into()),
            ..Default::default()
        },
        reason: "leaked".into(),
        ..Default::default()
    };
    db.revoke(&req, &[a], "admin").await.unwrap();
    let p = path(a, k1, 'c', "sha256:three");
    assert_eq!(
        db.commit_upload(&p, "zstd", &[]).await.unwrap(),
        CommitOutcome::KeyRevoked
    );
    assert_eq!(
        db.missing_paths(a, std::slice::from_ref(&p.store_path_hash))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        kinds(&db.ledger_entries(a, 1, 100).await.unwrap()),
        vec![(1, "ca-certificate"), (2, "upload-key"), (3, "revocation")]
    );
}

/// On PostgreSQL, transactions run at once: uploads committing concurrently
/// to one cache still get 1..n, each number once, and none deadlocks (the
/// append is each transaction's last lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_on_postgres_are_numbered_without_gaps() {
    let Some(db) = postgres().await else {
        eprintln!("PROVENIX_TEST_POSTGRES_URL is unset: run through scripts/test-all.sh");
        return;
    };
    let a = cache(&db, "a").await;
    upload_key(&db, a, "k1", None).await;
    let k1 = db.upload_key_by_id("k1").await.unwrap().expect("k1").id;
    let alphabet: Vec<char> = "0123456789abcdfghijklmnpqrsvwxyz".chars().collect();
    let mut tasks = Vec::new();
    for (i, &c) in alphabet.iter().enumerate() {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            // Half the paths twice: the second is a witness or a race loser.
            let nar_hash = format!("sha256:{}", i / 2);
            let first = db
                .commit_upload(&path(a, k1, c, &nar_hash), "zstd", &[])
                .await;
            let again = db
                .commit_upload(&path(a, k1, c, &nar_hash), "zstd", &[])
                .await;
            (first.map(|_| ()), again.map(|_| ()))
        }));
    }
    for t in tasks {
        let (first, again) = t.await.expect("task");
        // A deadlock abort is retried by the server; here it must not happen
        // at all, as appends take one lock per cache at the very end.
        first.expect("commit");
        again.expect("commit again");
    }
    let log = db.ledger_entries(a, 1, 1000).await.unwrap();
    let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=log.len() as i64).collect::<Vec<_>>());
    // The CA, one key, 32 paths each uploaded and then witnessed again.
    assert_eq!(log.len(), 2 + 2 * alphabet.len(), "{log:?}");
}

/// SQLite, and PostgreSQL when scripts/test-all.sh started one (the
/// directory holds the SQLite file).
async fn both_databases() -> (Vec<Db>, tempfile::TempDir) {
    let (sqlite, dir) = database().await;
    let mut dbs = vec![sqlite];
    match postgres().await {
        Some(pg) => dbs.push(pg),
        None => eprintln!("PROVENIX_TEST_POSTGRES_URL is unset: SQLite only"),
    }
    (dbs, dir)
}

/// Item 5 on both databases: one statement (key, nonce) records once. Two
/// copies racing record one; the other is refused and leaves no entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_statement_records_once_on_both_databases() {
    let (dbs, _dir) = both_databases().await;
    for db in dbs {
        let a = cache(&db, "a").await;
        upload_key(&db, a, "k1", None).await;
        let k1 = db.upload_key_by_id("k1").await.unwrap().expect("k1").id;
        let p = std::sync::Arc::new(path(a, k1, 'c', "sha256:once"));
        let racers: Vec<_> = (0..4)
            .map(|_| {
                let (db, p) = (db.clone(), p.clone());
                tokio::spawn(async move { db.commit_upload(&p, "zstd", &[]).await })
            })
            .collect();
        let mut created = 0;
        for r in racers {
            match r.await.unwrap() {
                Ok(CommitOutcome::Created) => created += 1,
                Err(provenix_server::db::DbError::StatementReplayed) => {}
                // PostgreSQL may abort a loser for the conflict instead.
                Err(e) if e.is_transient() => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(created, 1);
        assert!(matches!(
            db.commit_upload(&p, "zstd", &[]).await,
            Err(provenix_server::db::DbError::StatementReplayed)
        ));
        let entries = db.ledger_entries(a, 1, 100).await.unwrap();
        assert_eq!(
            kinds(&entries),
            vec![(1, "ca-certificate"), (2, "upload-key"), (3, "upload")]
        );
    }
}

/// Keys certified at once for a new cache log its CA once, before all of
/// them, on both databases; every key's row names that entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_keys_log_the_ca_once() {
    let (dbs, _dir) = both_databases().await;
    for db in dbs {
        let a = cache(&db, "a").await;
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move { upload_key(&db, a, &format!("k{i}"), None).await })
            })
            .collect();
        for r in racers {
            assert_eq!(r.await.unwrap(), UploadKeyRecorded::Recorded);
        }
        let log = db.ledger_entries(a, 1, 100).await.unwrap();
        let mut want = vec![(1, "ca-certificate")];
        want.extend((2..=9).map(|seq| (seq, "upload-key")));
        assert_eq!(kinds(&log), want);
    }
}
