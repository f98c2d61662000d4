//! The fast tier's one fixture: the real router and state over SQLite and
//! local storage in a temporary directory, called in-process with
//! `tower::ServiceExt::oneshot` (no socket, no other process), so the
//! access table and the API's refusals run with plain `cargo test`.

#![allow(dead_code)] // each test file uses part of it

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use provenix_policy::{CachePermissions, Permission};
use provenix_server::config::{default_config_text, Config};
use provenix_server::state::AppState;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

pub struct Harness {
    pub state: Arc<AppState>,
    router: Router,
    pub root: String,
    pub dir: tempfile::TempDir,
}

/// An upload key from an exchange: the key, its id and its session token.
pub struct UploadKey {
    pub key: ed25519_dalek::SigningKey,
    pub key_id: String,
    pub session: String,
}

impl UploadKey {
    /// Signs `info` as `provenix push` does.
    pub fn sign(&self, info: &mut provenix_provenance::upload::UploadPathNarInfo) {
        info.sign(&self.key_id, &self.key);
    }
}

/// An answer: status, the JSON body (Null when not JSON) and the raw text.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
    pub text: String,
    /// The body as received (tiles are binary).
    pub bytes: Vec<u8>,
    pub www_authenticate: bool,
    /// The answer's `X-Request-Id`.
    pub request_id: Option<String>,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("")
    }

    /// A refusal in the API's shape: the status, `{code, message}`, and a
    /// message that says something.
    #[track_caller]
    pub fn assert_refused(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(self.code(), code, "{}", self.text);
        assert!(
            self.json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.text
        );
    }
}

impl Harness {
    pub async fn new() -> Harness {
        Self::with_config(|_| {}).await
    }

    pub async fn with_config(edit: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::parse(&default_config_text(dir.path())).expect("default config");
        edit(&mut config);
        let state = AppState::new(config, None).await.expect("state");
        state.db.migrate().await.expect("migrations");
        let root = state
            .tokens
            .mint("root", Duration::from_secs(3600), root_permissions())
            .expect("root token");
        Harness {
            router: provenix_server::router(state.clone()),
            state,
            root,
            dir,
        }
    }

    /// Every file under the local storage (packs), recursively.
    pub fn stored_files(&self) -> Vec<std::path::PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir.path().join("storage"), &mut out);
        out
    }

    /// Waits (briefly: deletion runs beside the answer) for the storage to
    /// hold no file, and says which are left if it does not.
    pub async fn assert_storage_empties(&self) {
        for _ in 0..100 {
            if self.stored_files().is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(self.stored_files(), Vec::<std::path::PathBuf>::new());
    }

    /// Exchanges the access token `token` for an upload key on `cache`.
    pub async fn exchange(&self, token: &str, cache: &str) -> UploadKey {
        use provenix_provenance::exchange::{
            access_token_id, encode_public_key, proof_message, sign,
        };
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let public_key = encode_public_key(&key.verifying_key());
        let msg = proof_message(
            &self.state.api_endpoint,
            &access_token_id(token),
            cache,
            &public_key,
        );
        let a = self
            .call(
                Method::POST,
                "/_api/v1/keys/exchange",
                Some(token),
                Some(serde_json::json!({ "cache": cache, "public_key": public_key, "proof": sign(&key, &msg) })),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        UploadKey {
            key,
            key_id: a.json["key_id"].as_str().expect("key id").to_string(),
            session: a.json["access_token"]
                .as_str()
                .expect("session token")
                .to_string(),
        }
    }

    /// `POST /_api/v1/upload-path/existing-nar`: records `info` on a NAR
    /// the server holds, without sending it.
    pub async fn existing_nar(
        &self,
        token: &str,
        info: &provenix_provenance::upload::UploadPathNarInfo,
    ) -> Answer {
        self.call(
            Method::POST,
            "/_api/v1/upload-path/existing-nar",
            Some(token),
            Some(serde_json::to_value(info).expect("statement")),
        )
        .await
    }

    /// `PUT /_api/v1/upload-path` with `info` in its header and `body`.
    pub async fn upload(
        &self,
        token: &str,
        info: &provenix_provenance::upload::UploadPathNarInfo,
        body: impl Into<Body>,
    ) -> Answer {
        let req = Request::builder()
            .method(Method::PUT)
            .uri("/_api/v1/upload-path")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(
                provenix_provenance::upload::UPLOAD_HEADER,
                serde_json::to_string(info).expect("statement"),
            )
            .body(body.into())
            .expect("request");
        self.send(req).await
    }

    /// A token of `sub` with `perm` on the caches `pattern` matches.
    pub fn token(&self, sub: &str, pattern: &str, perm: Permission) -> String {
        let mut caches = CachePermissions::default();
        caches.grant(pattern, |p| *p = perm);
        self.state
            .tokens
            .mint(sub, Duration::from_secs(3600), caches)
            .expect("token")
    }

    /// A token with any header and claims, signed with this server's HS256
    /// secret: for shapes `token` never mints (expired, `crit`, oversized).
    pub fn sign_own(&self, header: serde_json::Value, claims: serde_json::Value) -> String {
        use base64::Engine;
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let secret = match self.state.config.token_secret().expect("secret") {
            provenix_server::config::TokenSecret::Hs256(k) => k,
            _ => unreachable!("the default config signs with HS256"),
        };
        let key = jsonwebtoken::EncodingKey::from_secret(&secret);
        let input = format!("{}.{}", b64(&header), b64(&claims));
        let sig =
            jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
                .expect("HMAC");
        format!("{input}.{sig}")
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        self.send(req).await
    }

    pub async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let www_authenticate = resp.headers().contains_key(header::WWW_AUTHENTICATE);
        let request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Answer {
            status,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
            bytes: bytes.to_vec(),
            www_authenticate,
            request_id,
        }
    }

    pub async fn get(&self, uri: &str, token: Option<&str>) -> Answer {
        self.call(Method::GET, uri, token, None).await
    }

    /// Creates `name` with the root token.
    pub async fn create_cache(&self, name: &str, public: bool) {
        let a = self
            .call(
                Method::POST,
                &format!("/_api/v1/cache-config/{name}"),
                Some(&self.root),
                Some(serde_json::json!({ "is_public": public })),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    }
}

fn root_permissions() -> CachePermissions {
    let mut caches = CachePermissions::default();
    caches.grant("*", |p| *p = Permission::all());
    caches
}

/// An unsigned statement uploading `nar` as `store_path` to `cache`, with
/// `nar_hash` (the NAR's own when None).
pub fn statement(
    cache: &str,
    store_path: &str,
    nar: &[u8],
    nar_hash: Option<&str>,
) -> provenix_provenance::upload::UploadPathNarInfo {
    use provenix_provenance::NarHash;
    provenix_provenance::upload::UploadPathNarInfo {
        cache: cache.into(),
        store_path: store_path.into(),
        nar_hash: nar_hash.map_or_else(|| NarHash::of(nar), |h| NarHash::parse(h).expect("hash")),
        nar_size: nar.len() as u64,
        references: vec![],
        deriver: None,
        ca: None,
        key_id: None,
        nonce: None,
        signature: None,
    }
}

/// The permission with only the fields `f` sets.
pub fn perm(f: impl FnOnce(&mut Permission)) -> Permission {
    let mut p = Permission::default();
    f(&mut p);
    p
}
