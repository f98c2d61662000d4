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
    _dir: tempfile::TempDir,
}

/// An answer: status, the JSON body (Null when not JSON) and the raw text.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
    pub text: String,
    pub www_authenticate: bool,
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
            _dir: dir,
        }
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
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let www_authenticate = resp.headers().contains_key(header::WWW_AUTHENTICATE);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Answer {
            status,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
            www_authenticate,
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

/// The permission with only the fields `f` sets.
pub fn perm(f: impl FnOnce(&mut Permission)) -> Permission {
    let mut p = Permission::default();
    f(&mut p);
    p
}
