//! Fast tier: the API's refusals of bad input are `{code, message}` with
//! the code's status, and change nothing.

mod harness;

use axum::http::{Method, StatusCode};
use harness::{perm, statement, Harness};
use serde_json::json;

/// The cache still lacks the path `hash`: the refusal stored nothing.
async fn assert_still_missing(h: &Harness, cache: &str, hash: &str) {
    let missing = h
        .call(
            Method::POST,
            "/_api/v1/get-missing-paths",
            Some(&h.root),
            Some(json!({ "cache": cache, "store_path_hashes": [hash] })),
        )
        .await;
    assert_eq!(
        missing.json["missing_paths"],
        json!([hash]),
        "{}",
        missing.text
    );
}

#[tokio::test]
async fn malformed_credentials_are_refused_with_a_challenge() {
    let h = Harness::new().await;
    h.create_cache("priv", false).await;
    // A token signed by another server's secret.
    let other = Harness::new().await;
    let foreign = other.token("eve", "*", perm(|p| p.pull = true));
    for cache in ["priv", "missing"] {
        let uri = format!("/{cache}/nix-cache-info");
        let a = h.get(&uri, Some("not-a-jwt")).await;
        a.assert_refused(401, "invalid-token");
        assert!(a.www_authenticate);
        h.get(&uri, Some(&foreign))
            .await
            .assert_refused(401, "invalid-token");
    }
    // The API refuses a bad token whatever it is asked.
    h.get("/_api/v1/cache-config/priv", Some("not-a-jwt"))
        .await
        .assert_refused(401, "invalid-token");
}

/// Item 12: a stale or bad token (an expired one in a netrc, say) does not
/// stop pulls from a public cache: they are answered as anonymous pulls.
/// On a private cache, and on a missing one alike, the token is refused.
#[tokio::test]
async fn a_stale_token_still_pulls_from_a_public_cache() {
    let h = Harness::new().await;
    h.create_cache("pub", true).await;
    h.create_cache("priv", false).await;
    let now = provenix_server::clock::now();
    let expired = h.sign_own(
        json!({"alg": "HS256", "typ": "JWT"}),
        json!({"sub": "alice", "iat": now - 7200, "exp": now - 3600,
            "provenix": {"caches": {"*": {"r": true}}}}),
    );
    let other = Harness::new().await;
    let foreign = other.token("eve", "*", perm(|p| p.pull = true));
    let key = h.exchange(&h.root, "pub").await;
    let nar = provenix_provenance::nar::write(&provenix_provenance::nar::Node::Regular {
        executable: false,
        contents: b"public bytes".to_vec(),
    });
    let hash = "0123456789abcdfghijklmnpqrsvwxyz";
    let mut info = statement("pub", &format!("/nix/store/{hash}-stale"), &nar, None);
    key.sign(&mut info);
    let upload = h.upload(&key.session, &info, nar).await;
    assert_eq!(upload.status, StatusCode::OK, "{}", upload.text);
    for token in [expired.as_str(), foreign.as_str(), "not-a-jwt"] {
        let info = h.get("/pub/nix-cache-info", Some(token)).await;
        assert_eq!(info.status, StatusCode::OK, "{}", info.text);
        let narinfo = h.get(&format!("/pub/{hash}.narinfo"), Some(token)).await;
        assert_eq!(narinfo.status, StatusCode::OK, "{}", narinfo.text);
        assert!(narinfo.text.contains("StorePath:"), "{}", narinfo.text);
        // The private cache and a missing one answer the same refusal.
        let private = h.get("/priv/nix-cache-info", Some(token)).await;
        let missing = h.get("/missing/nix-cache-info", Some(token)).await;
        assert_eq!(private.status, StatusCode::UNAUTHORIZED, "{}", private.text);
        assert_eq!(private.text, missing.text);
    }
    h.get("/priv/nix-cache-info", Some(&expired))
        .await
        .assert_refused(401, "expired");
    // Pushing with it is still refused: only reads of public caches relent.
    h.call(
        Method::POST,
        "/_api/v1/get-missing-paths",
        Some(&expired),
        Some(json!({ "cache": "pub", "store_path_hashes": [] })),
    )
    .await
    .assert_refused(401, "expired");
}

#[tokio::test]
async fn names_outside_the_syntax_are_refused_before_any_lookup() {
    let h = Harness::new().await;
    let a = h
        .call(
            Method::POST,
            "/_api/v1/cache-config/.hidden",
            Some(&h.root),
            Some(json!({})),
        )
        .await;
    a.assert_refused(400, "invalid-cache-name");
    // On the Nix protocol a bad name is a cache that does not exist.
    h.get("/.hidden/nix-cache-info", Some(&h.root))
        .await
        .assert_refused(404, "no-such-cache");
    let traversal = || {
        h.call(
            Method::POST,
            "/_api/v1/get-missing-paths",
            Some(&h.root),
            Some(json!({ "cache": "main", "store_path_hashes": ["../../etc/passwd"] })),
        )
    };
    // The cache does not exist: the access decision answers first.
    traversal().await.assert_refused(404, "no-such-cache");
    h.create_cache("main", false).await;
    let a = traversal().await;
    a.assert_refused(400, "invalid-store-path");
}

#[tokio::test]
async fn settings_out_of_range_change_nothing() {
    let h = Harness::new().await;
    h.create_cache("main", false).await;
    for (body, code) in [
        (json!({ "priority": -1 }), "invalid-priority"),
        (json!({ "store_dir": "relative" }), "invalid-store-dir"),
        (json!({ "retention_period": -5 }), "invalid-retention"),
        (
            json!({ "upstream_cache_key_names": ["a b"] }),
            "invalid-upstream-key",
        ),
        (
            json!({ "rotate_keypair": { "overlap": -1 } }),
            "invalid-overlap",
        ),
        (
            json!({ "rotate_keypair": { "keypair": "nope" } }),
            "invalid-keypair",
        ),
    ] {
        let a = h
            .call(
                Method::PATCH,
                "/_api/v1/cache-config/main",
                Some(&h.root),
                Some(body.clone()),
            )
            .await;
        a.assert_refused(400, code);
    }
    let info = h.get("/_api/v1/cache-config/main", Some(&h.root)).await;
    assert_eq!(info.json["priority"], 41, "{}", info.text);
    assert_eq!(info.json["store_dir"], "/nix/store");
    assert_eq!(info.json["signing_keys"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn uploads_need_a_signed_statement() {
    let h = Harness::new().await;
    h.create_cache("main", false).await;
    let unsigned = statement(
        "main",
        "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-x",
        b"not sent",
        None,
    );
    h.existing_nar(&h.root, &unsigned)
        .await
        .assert_refused(401, "unsigned-upload");
    let mut forged = unsigned;
    forged.key_id = Some("deadbeef".into());
    forged.signature = Some("AAAA".into());
    let a = h.existing_nar(&h.root, &forged).await;
    a.assert_refused(401, "unknown-key");
    assert_still_missing(&h, "main", "0123456789abcdfghijklmnpqrsvwxyz").await;
}

#[tokio::test]
async fn a_revocation_with_a_misspelt_selector_is_refused() {
    let h = Harness::new().await;
    h.create_cache("main", false).await;
    // "repo" is not a selector: ignoring it would revoke every key of the cache.
    let a = h
        .call(
            Method::POST,
            "/_api/v1/revoke",
            Some(&h.root),
            Some(json!({ "cache": "main", "repo": "octo/x", "reason": "r" })),
        )
        .await;
    a.assert_refused(400, "invalid-revocation");
    assert!(a.text.contains("repo"), "{}", a.text);
    let a = h
        .call(
            Method::POST,
            "/_api/v1/revoke",
            Some(&h.root),
            Some(json!({ "cache": "main", "reason": " " })),
        )
        .await;
    a.assert_refused(400, "invalid-revocation");
    // A reason is logged and printed on auditors' terminals: no escape
    // sequences (the attack review retitled a terminal with one).
    let a = h
        .call(
            Method::POST,
            "/_api/v1/revoke",
            Some(&h.root),
            Some(json!({ "cache": "main", "reason": "x\u{1b}]0;PWNED\u{7}\rfake" })),
        )
        .await;
    a.assert_refused(400, "invalid-revocation");
    assert!(a.text.contains("control characters"), "{}", a.text);
}

#[tokio::test]
async fn unknown_endpoints_are_json_404s() {
    let h = Harness::new().await;
    let a = h.get("/_api/v1/nothing-here/at/all/x", None).await;
    a.assert_refused(404, "not-found");
    assert_eq!(h.get("/", None).await.status, StatusCode::OK);
}

/// The retention permission alone cannot empty a cache: a retention under
/// a day deletes everything not pulled within it at the next GC.
#[tokio::test]
async fn a_short_retention_needs_the_delete_permission_too() {
    let h = Harness::new().await;
    h.create_cache("main", false).await;
    let retention = h.token("r", "main", perm(|p| p.configure_cache_retention = true));
    let patch = |token: String, seconds: i64| {
        let h = &h;
        async move {
            h.call(
                Method::PATCH,
                "/_api/v1/cache-config/main",
                Some(&token),
                Some(json!({ "retention_period": seconds })),
            )
            .await
        }
    };
    patch(retention.clone(), 1)
        .await
        .assert_refused(403, "permission-denied");
    let info = h.get("/_api/v1/cache-config/main", Some(&h.root)).await;
    assert_eq!(
        info.json["retention_period"],
        serde_json::Value::Null,
        "{}",
        info.text
    );
    // A day or more, or 0 (forever), is the retention permission's own.
    assert_eq!(
        patch(retention.clone(), 86_400).await.status,
        StatusCode::OK
    );
    assert_eq!(patch(retention, 0).await.status, StatusCode::OK);
    let both = h.token(
        "rd",
        "main",
        perm(|p| {
            p.configure_cache_retention = true;
            p.delete = true
        }),
    );
    let a = patch(both, 1).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["retention_period"], 1);
}

/// A refused upload deletes the packs it stored, at once: GC's sweep (a
/// day later) is only for crashes.
#[tokio::test]
async fn a_refused_upload_leaves_no_bytes_behind() {
    let h = Harness::new().await;
    h.create_cache("main", false).await;
    let key = h.exchange(&h.root, "main").await;
    // Five incompressible MiB, so that at least one 4 MiB pack is stored
    // before the stream ends and its hash is found wrong.
    let mut contents = vec![0u8; 5 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in contents.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    // A valid NAR, so the whole stream is read and packed; only its hash
    // is not the statement's.
    let body = provenix_provenance::nar::write(&provenix_provenance::nar::Node::Regular {
        executable: false,
        contents,
    });
    let mut info = statement(
        "main",
        "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-big",
        &body,
        Some("sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"),
    );
    key.sign(&mut info);
    let a = h.upload(&key.session, &info, body).await;
    a.assert_refused(400, "nar-hash-mismatch");
    h.assert_storage_empties().await;
}

/// An upload is judged by its key's validity when it completes: a key that
/// expired while its NAR streamed (past the grace) stores nothing.
#[tokio::test]
async fn an_upload_completing_after_its_key_expired_is_refused() {
    use futures::StreamExt;
    let h = Harness::with_config(|c| {
        c.signing_keys.lifetime = std::time::Duration::from_secs(1);
        c.signing_keys.completion_grace = std::time::Duration::ZERO;
    })
    .await;
    h.create_cache("main", false).await;
    let key = h.exchange(&h.root, "main").await;
    let nar = provenix_provenance::nar::write(&provenix_provenance::nar::Node::Regular {
        executable: false,
        contents: vec![7u8; 300_000],
    });
    let mut info = statement(
        "main",
        "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-slow",
        &nar,
        None,
    );
    key.sign(&mut info);
    // The NAR in three parts, the last one after the key has expired.
    let parts: Vec<Vec<u8>> = nar.chunks(nar.len() / 3 + 1).map(<[u8]>::to_vec).collect();
    let body = futures::stream::iter(parts.into_iter().enumerate()).then(|(i, part)| async move {
        if i == 2 {
            tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        }
        Ok::<_, std::io::Error>(bytes::Bytes::from(part))
    });
    let a = h
        .upload(&key.session, &info, axum::body::Body::from_stream(body))
        .await;
    a.assert_refused(401, "key-expired");
    assert_still_missing(&h, "main", "0123456789abcdfghijklmnpqrsvwxyz").await;
    h.assert_storage_empties().await;
}

/// A statement vouching for a stored path must describe it as stored: a
/// witness with another size, references or deriver is refused and not
/// recorded; an existing-NAR statement with a false size must send the NAR.
#[tokio::test]
async fn vouching_statements_must_describe_the_stored_path() {
    use provenix_provenance::upload::UploadPathNarInfo;
    let h = Harness::new().await;
    h.create_cache("main", false).await;
    h.create_cache("other", false).await;
    let key = h.exchange(&h.root, "main").await;
    let nar = provenix_provenance::nar::write(&provenix_provenance::nar::Node::Regular {
        executable: false,
        contents: b"hello".to_vec(),
    });
    let path = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello";
    let described =
        |nar_size: u64, references: Vec<String>, deriver: Option<String>| UploadPathNarInfo {
            nar_size,
            references,
            deriver,
            ..statement("main", path, &nar, None)
        };
    let mut honest = described(nar.len() as u64, vec![], None);
    key.sign(&mut honest);
    let a = h.upload(&key.session, &honest, nar.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let records = || async {
        h.get(
            "/_api/v1/cache/main/provenance/0123456789abcdfghijklmnpqrsvwxyz",
            Some(&h.root),
        )
        .await
        .json["uploads"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(records().await, 1);
    let dep = "/nix/store/00000000000000000000000000000000-dep".to_string();
    let evil = "/nix/store/11111111111111111111111111111111-evil.drv".to_string();
    for (mut lie, field) in [
        (described(999_999, vec![], None), "nar_size"),
        (described(8, vec![], None), "nar_size"),
        (described(nar.len() as u64, vec![dep], None), "references"),
        (described(nar.len() as u64, vec![], Some(evil)), "deriver"),
    ] {
        key.sign(&mut lie);
        let a = h.existing_nar(&key.session, &lie).await;
        a.assert_refused(409, "statement-mismatch");
        assert!(a.text.contains(field), "{field}: {}", a.text);
    }
    // The honest witness is recorded; the lies were not.
    let mut again = described(nar.len() as u64, vec![], None);
    key.sign(&mut again);
    let a = h.existing_nar(&key.session, &again).await;
    assert_eq!(a.json["outcome"], "exists", "{}", a.text);
    assert_eq!(records().await, 2);

    // In another cache, recording the stored NAR without sending it needs
    // a statement that describes it: a false size means "send the NAR".
    // (The caller must also be able to read the NAR somewhere: the root
    // token can; the session token of a key for "other" cannot.)
    let other = h.exchange(&h.root, "other").await;
    let mut lie = UploadPathNarInfo {
        cache: "other".into(),
        ..described(999_999, vec![], None)
    };
    other.sign(&mut lie);
    let a = h.existing_nar(&h.root, &lie).await;
    assert_eq!(a.json["outcome"], "nar-required", "{}", a.text);
    let mut fits = UploadPathNarInfo {
        cache: "other".into(),
        ..described(nar.len() as u64, vec![], None)
    };
    other.sign(&mut fits);
    let a = h.existing_nar(&h.root, &fits).await;
    assert_eq!(a.json["outcome"], "deduplicated", "{}", a.text);
}

/// Selectors by repository (or workflow, run, subject) name the issuer:
/// GitHub's repository 42 and a GitLab instance's are not one repository.
#[tokio::test]
async fn selectors_do_not_cross_issuers() {
    use provenix_server::db::upload_keys::NewUploadKey;
    let h = Harness::new().await;
    h.create_cache("main", false).await;
    let cache_id = h.state.db.cache_by_name("main").await.unwrap().unwrap().id;
    for (key_id, issuer) in [
        ("k-github", "https://token.actions.githubusercontent.com"),
        ("k-gitlab", "https://gitlab.example.com"),
    ] {
        let mut claims = serde_json::Map::new();
        claims.insert("repository_id".into(), json!("42"));
        h.state
            .db
            .record_upload_key(
                &NewUploadKey {
                    key_id,
                    public_key: &format!("pk-{key_id}"),
                    cache_id,
                    kind: "oidc",
                    issuer,
                    subject: "project",
                    publisher_id: None,
                    claims: &claims,
                    certificate: "PEM",
                    ca_certificate: "CA PEM",
                    not_before: 0,
                    not_after: i64::MAX,
                },
                None,
            )
            .await
            .unwrap();
    }
    let revoke = |body: serde_json::Value| {
        h.call(Method::POST, "/_api/v1/revoke", Some(&h.root), Some(body))
    };
    let a = revoke(json!({ "cache": "main", "repository": "42", "reason": "r", "dry_run": true }))
        .await;
    a.assert_refused(400, "ambiguous-selector");
    assert!(a.text.contains("gitlab.example.com"), "{}", a.text);
    h.get("/_api/v1/cache/main/keys?repository=42", Some(&h.root))
        .await
        .assert_refused(400, "ambiguous-selector");
    let a = revoke(json!({
        "cache": "main", "repository": "42", "reason": "r",
        "issuer": "https://token.actions.githubusercontent.com",
    }))
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["keys"], json!(["k-github"]), "{}", a.text);
    // Unambiguous selectors need no issuer: a key id, or a repository one
    // issuer alone has.
    let a =
        revoke(json!({ "cache": "main", "key": "k-gitlab", "reason": "r", "dry_run": true })).await;
    assert_eq!(a.json["keys"], json!(["k-gitlab"]), "{}", a.text);
    let keys = h
        .get(
            "/_api/v1/cache/main/keys?repository=42&issuer=https://gitlab.example.com",
            Some(&h.root),
        )
        .await;
    assert_eq!(
        keys.json["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        keys.text
    );
}

/// What axum itself refuses (a body of the wrong type, malformed JSON, a
/// query it cannot read, a wrong method) is `{code, message}` too.
#[tokio::test]
async fn unreadable_requests_are_json_refusals() {
    let h = Harness::new().await;
    h.create_cache("main", false).await;
    for body in [
        json!({ "retention_period": 86400.5 }),
        json!({ "retention_period": "86400" }),
        json!({ "rotate_keypair": { "overlap": null } }),
        json!({ "bogus": 1 }),
    ] {
        h.call(
            Method::PATCH,
            "/_api/v1/cache-config/main",
            Some(&h.root),
            Some(body),
        )
        .await
        .assert_refused(400, "invalid-request");
    }
    h.get("/_api/v1/cache/main/uploads?cursor=x", Some(&h.root))
        .await
        .assert_refused(400, "invalid-request");
    h.call(Method::PUT, "/_api/v1/whoami", Some(&h.root), None)
        .await
        .assert_refused(405, "method-not-allowed");
    // The Nix protocol's routes too (found by the outsider attack: empty 405s).
    for uri in [
        "/main/nix-cache-info",
        "/main/0123456789abcdfghijklmnpqrsvwxyz.narinfo",
        "/main/nar/0123456789abcdfghijklmnpqrsvwxyz.nar.zst",
    ] {
        h.call(Method::DELETE, uri, Some(&h.root), None)
            .await
            .assert_refused(405, "method-not-allowed");
    }
    // Nothing changed.
    let info = h.get("/_api/v1/cache-config/main", Some(&h.root)).await;
    assert_eq!(
        info.json["retention_period"],
        serde_json::Value::Null,
        "{}",
        info.text
    );
}

/// Item 9, on the server's own tokens: a `crit` header this server does not
/// understand and a token over the size limit are refused, even when the
/// signature is the server's.
#[tokio::test]
async fn own_tokens_with_critical_headers_or_oversized_are_refused() {
    let h = Harness::new().await;
    h.create_cache("priv", false).await;
    let sign = |header, claims| h.sign_own(header, claims);
    let now = provenix_server::clock::now();
    let claims = json!({"sub": "alice", "iat": now, "exp": now + 600,
        "provenix": {"caches": {"priv": {"r": true}}}});
    let plain = sign(json!({"alg": "HS256", "typ": "JWT"}), claims.clone());
    let answer = h.get("/priv/nix-cache-info", Some(&plain)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);

    let crit = sign(
        json!({"alg": "HS256", "typ": "JWT", "crit": ["exp-v2"], "exp-v2": true}),
        claims.clone(),
    );
    let answer = h.get("/priv/nix-cache-info", Some(&crit)).await;
    answer.assert_refused(401, "invalid-token");
    assert!(answer.text.contains("critical"), "{}", answer.text);

    let mut padded = claims.clone();
    padded["padding"] = json!("x".repeat(17 * 1024));
    let big = sign(json!({"alg": "HS256", "typ": "JWT"}), padded);
    let answer = h.get("/priv/nix-cache-info", Some(&big)).await;
    answer.assert_refused(401, "invalid-token");
    assert!(answer.text.contains("16384"), "{}", answer.text);
}

/// Item 5: a signed statement records one upload. Read back from the
/// provenance (auditors may, and everyone with `public-audit`) and sent
/// again with no credential, it is refused: while the path is there (it
/// would be another witness) and after an admin deleted the path (it would
/// be served again under a fresh record naming the original builder).
#[tokio::test]
async fn a_signed_statement_cannot_be_replayed() {
    use provenix_provenance::upload::{UploadPathNarInfo, STATEMENT_PREFIX};
    let h = Harness::new().await;
    h.create_cache("main", true).await;
    let key = h.exchange(&h.root, "main").await;
    let nar = provenix_provenance::nar::write(&provenix_provenance::nar::Node::Regular {
        executable: false,
        contents: b"built once".to_vec(),
    });
    let hash = "0123456789abcdfghijklmnpqrsvwxyz";
    let mut info = statement("main", &format!("/nix/store/{hash}-once"), &nar, None);
    key.sign(&mut info);
    let first = h.upload(&key.session, &info, nar.clone()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);

    // What anyone reading the provenance gets: the statement and signature.
    let record = h
        .get(
            &format!("/_api/v1/cache/main/provenance/{hash}"),
            Some(&h.root),
        )
        .await;
    let upload = &record.json["uploads"][0];
    let text = upload["statement"].as_str().expect("statement");
    let mut replay: UploadPathNarInfo =
        serde_json::from_str(text.strip_prefix(STATEMENT_PREFIX).expect("v2")).unwrap();
    replay.signature = upload["signature"].as_str().map(str::to_string);
    assert_eq!(replay, info, "the record holds the statement as signed");
    let records = || async {
        h.get(
            &format!("/_api/v1/cache/main/provenance/{hash}"),
            Some(&h.root),
        )
        .await
        .json["uploads"]
            .as_array()
            .map_or(0, Vec::len)
    };

    // With no credential at all, while the path is there...
    let anonymous = |info: UploadPathNarInfo| {
        let h = &h;
        let nar = nar.clone();
        async move {
            let req = axum::http::Request::builder()
                .method(Method::PUT)
                .uri("/_api/v1/upload-path")
                .header(
                    provenix_provenance::upload::UPLOAD_HEADER,
                    serde_json::to_string(&info).unwrap(),
                )
                .body(axum::body::Body::from(nar))
                .unwrap();
            h.send(req).await
        }
    };
    anonymous(replay.clone())
        .await
        .assert_refused(409, "statement-replayed");
    assert_eq!(records().await, 1);
    // ...and after an admin deleted it.
    let deleted = h
        .call(
            Method::DELETE,
            &format!("/_api/v1/cache/main/paths/{hash}"),
            Some(&h.root),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    anonymous(replay.clone())
        .await
        .assert_refused(409, "statement-replayed");
    h.get(&format!("/main/{hash}.narinfo"), None)
        .await
        .assert_refused(404, "no-such-path");
    // The builder itself signs anew: a statement of its own, accepted.
    let mut fresh = info.clone();
    key.sign(&mut fresh);
    assert_ne!(fresh.nonce, info.nonce);
    let again = h.upload(&key.session, &fresh, nar.clone()).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
}

/// Repeated rotations with an overlap cannot pile up signing keys: at most
/// four sign at once (each signs every narinfo). Without an overlap the
/// new key alone signs, so that rotation is always allowed.
#[tokio::test]
async fn rotations_cannot_pile_up_live_cache_keys() {
    let h = Harness::new().await;
    h.create_cache("main", true).await;
    let rotate = |overlap: i64| {
        let h = &h;
        async move {
            h.call(
                Method::PATCH,
                "/_api/v1/cache-config/main",
                Some(&h.root),
                Some(json!({ "rotate_keypair": { "overlap": overlap } })),
            )
            .await
        }
    };
    let day = 86_400;
    for _ in 0..3 {
        let a = rotate(day).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    }
    let keys = |a: &harness::Answer| a.json["signing_keys"].as_array().map_or(0, Vec::len);
    let info = h.get("/_api/v1/cache-config/main", Some(&h.root)).await;
    assert_eq!(keys(&info), 4, "{}", info.text);
    rotate(day).await.assert_refused(400, "invalid-overlap");
    let info = h.get("/_api/v1/cache-config/main", Some(&h.root)).await;
    assert_eq!(
        keys(&info),
        4,
        "a refused rotation changed the keys: {}",
        info.text
    );
    let a = rotate(0).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(keys(&a), 1, "{}", a.text);
}

/// Rotations at once cannot together pass the live-key limit, nor give
/// two live keys one name (the attack review sent 10 and 30 at once and
/// got 6 live Nix keys, 4 named alike, and 20 live log keys): each checks
/// again under the cache's lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotations_stay_within_the_live_key_limit() {
    let h = Harness::new().await;
    h.create_cache("main", true).await;
    let day = 86_400;
    for body in [
        json!({ "rotate_keypair": { "overlap": day } }),
        json!({ "rotate_log_key": { "overlap": day } }),
    ] {
        let calls: Vec<_> = (0..12)
            .map(|_| {
                h.call(
                    Method::PATCH,
                    "/_api/v1/cache-config/main",
                    Some(&h.root),
                    Some(body.clone()),
                )
            })
            .collect();
        for a in futures::future::join_all(calls).await {
            assert!(
                a.status == StatusCode::OK || a.status == StatusCode::BAD_REQUEST,
                "{}",
                a.text
            );
        }
    }
    let info = h.get("/_api/v1/cache-config/main", Some(&h.root)).await;
    let keys = info.json["signing_keys"].as_array().unwrap();
    assert!(keys.len() <= 4, "{}", info.text);
    let mut names: Vec<&str> = keys
        .iter()
        .map(|k| k["public_key"].as_str().unwrap().split(':').next().unwrap())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        keys.len(),
        "two live keys of one name: {}",
        info.text
    );
    let log_keys = info.json["transparency_log"]["verifier_keys"]
        .as_array()
        .unwrap();
    assert!(log_keys.len() <= 4, "{}", info.text);
}
