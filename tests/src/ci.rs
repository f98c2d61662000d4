//! A CI world for end-to-end tests: an OIDC issuer fixture trusted as
//! `github`, a server, a cache `main` whose trusted publisher is build.yml of
//! octo-org/octo-repo, and clients inside a simulated GitHub Actions job.

use crate::http::{new_key, Answer, Http};
use crate::oidc::OidcIssuer;
use crate::{Backend, Client, TestServer};
use serde_json::{Map, Value};

/// `provenix publisher add main` for build.yml of octo-org/octo-repo; add
/// restrictions after it.
pub const ADD_PUBLISHER: [&str; 11] = [
    "publisher",
    "add",
    "main",
    "--github",
    "octo-org/octo-repo",
    "--repository-id",
    REPO_ID,
    "--owner-id",
    OWNER_ID,
    "--workflow",
    "build.yml",
];

pub const REPO_ID: &str = "42000001";
pub const OWNER_ID: &str = "7000001";

pub struct World {
    pub issuer: OidcIssuer,
    pub server: TestServer,
    pub http: Http,
    pub aud: String,
}

/// A server trusting the fixture issuer as `github`, a cache `main`, and
/// build.yml of octo-org/octo-repo registered as its trusted publisher.
pub fn world(extra: &str) -> World {
    world_on(Backend::Sqlite, extra, None)
}

/// `audience`: the issuer's configured audience (default: one unique to
/// this world, as the first-run config makes one unique to each server).
pub fn world_on(backend: Backend, extra: &str, audience: Option<&str>) -> World {
    build_world(backend, extra, audience, "")
}

/// A world whose `[[oidc.issuers]]` entry has these settings too.
pub fn world_with_issuer_settings(settings: &str) -> World {
    build_world(Backend::Sqlite, "", None, settings)
}

fn build_world(backend: Backend, extra: &str, audience: Option<&str>, settings: &str) -> World {
    let issuer = OidcIssuer::start();
    let mut issuer_toml = issuer.server_toml("github");
    issuer_toml.push_str(settings);
    let audience = audience.map_or_else(
        || format!("provenix-test:{:016x}", rand::random::<u64>()),
        str::to_string,
    );
    issuer_toml.push_str(&format!("audience = \"{audience}\"\n"));
    let server = TestServer::start_with(backend, &format!("{extra}\n{issuer_toml}"));
    let admin = server.client();
    admin.ok(&["cache", "create", "main"]);
    let out = admin.ok(&ADD_PUBLISHER);
    assert!(out.contains("Trusted publisher 1 added"), "{out}");
    let http = Http::new(&server.url);
    World {
        issuer,
        server,
        http,
        aud: audience,
    }
}

impl World {
    pub fn claims(&self) -> Map<String, Value> {
        self.issuer.claims(&self.aud)
    }

    pub fn with(&self, changes: Value) -> Map<String, Value> {
        let mut c = self.claims();
        for (k, v) in changes.as_object().unwrap() {
            c.insert(k.clone(), v.clone());
        }
        c
    }

    /// Exchanges a token made from `claims`, signed by the issuer.
    pub async fn exchange(&self, claims: &Map<String, Value>) -> Answer {
        let token = self.issuer.sign(claims);
        self.exchange_raw(&token, claims).await
    }

    pub async fn exchange_raw(&self, token: &str, claims: &Map<String, Value>) -> Answer {
        let jti = claims["jti"].as_str().unwrap();
        let aud = claims["aud"].as_str().unwrap_or_default();
        self.http
            .exchange_oidc(token, aud, jti, "main", &new_key())
            .await
    }

    /// A client logged in without a token, inside a simulated Actions job.
    pub fn ci_client(&self) -> (Client, Vec<(&'static str, String)>) {
        self.ci_client_with(None)
    }

    pub fn ci_client_with(&self, token: Option<&str>) -> (Client, Vec<(&'static str, String)>) {
        let c = Client::new();
        let mut args = vec!["login", "ci", &self.server.url];
        args.extend(token);
        c.ok(&args);
        let env = vec![
            (
                "ACTIONS_ID_TOKEN_REQUEST_URL",
                self.issuer.request_url.clone(),
            ),
            (
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                self.issuer.request_token.clone(),
            ),
        ];
        (c, env)
    }
}

pub fn run_ci(c: &Client, env: &[(&str, String)], args: &[&str]) -> (bool, String, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    c.run_with(args, &env)
}
