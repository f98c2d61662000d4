//! An OIDC issuer shaped like GitHub Actions': discovery and JWKS over HTTPS
//! (a certificate from our own rcgen CA, which the server trusts through
//! `ca-cert`), a token endpoint like `$ACTIONS_ID_TOKEN_REQUEST_URL`, and
//! RS256 tokens with GitHub's full claim set. It runs on its own thread so
//! it answers while a test waits on a blocking CLI call.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_rustls::rustls;

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct SigningKey {
    kid: String,
    pair: KeyPair,
}

struct Shared {
    issuer: String,
    keys: Mutex<Vec<SigningKey>>,
    /// An ES256 key published beside the RSA ones, once enabled.
    ec_key: Mutex<Option<aws_lc_rs::signature::EcdsaKeyPair>>,
    /// Claims the token endpoint puts in its next tokens (over the defaults).
    overrides: Mutex<Map<String, Value>>,
    /// Claims of jobs made by `job_request_url`, by the URL's `job`.
    jobs: Mutex<HashMap<String, Map<String, Value>>>,
    request_token: String,
    jwks_fetches: AtomicUsize,
    /// While set, the JWKS answers 500 (an issuer outage).
    jwks_down: AtomicBool,
    jti_counter: AtomicUsize,
    /// The token endpoint's claim set: Forgejo's rather than GitHub's.
    forgejo: bool,
}

pub struct OidcIssuer {
    /// `https://127.0.0.1:PORT` (Forgejo's: with `/api/actions`): the
    /// `iss` of every token.
    pub issuer: String,
    /// `https://127.0.0.1:PORT`: the forge's URL (`GITHUB_SERVER_URL`).
    pub base: String,
    /// PEM of the CA that signed the issuer's HTTPS certificate.
    pub ca_cert: PathBuf,
    /// Shaped like `$ACTIONS_ID_TOKEN_REQUEST_URL` (plain HTTP).
    pub request_url: String,
    /// `$ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
    pub request_token: String,
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
}

const EC_KID: &str = "fixture-ec-key";

fn new_key(n: usize) -> SigningKey {
    SigningKey {
        kid: format!("fixture-key-{n}"),
        pair: KeyPair::generate(KeySize::Rsa2048).expect("RSA key"),
    }
}

fn jwk(k: &SigningKey) -> Value {
    let public = k.pair.public_key();
    json!({
        "kty": "RSA", "alg": "RS256", "use": "sig", "kid": k.kid,
        "n": b64url(public.modulus().big_endian_without_leading_zero()),
        "e": b64url(public.exponent().big_endian_without_leading_zero()),
    })
}

async fn discovery(State(s): State<Arc<Shared>>) -> Json<Value> {
    // GitHub's document: no authorization_endpoint (openidconnect-rs #201).
    Json(json!({
        "issuer": s.issuer,
        "jwks_uri": format!("{}/.well-known/jwks", s.issuer),
        "subject_types_supported": ["public", "pairwise"],
        "response_types_supported": ["id_token"],
        "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "repository",
            "repository_id", "repository_owner", "repository_owner_id", "run_id", "run_number",
            "run_attempt", "actor", "actor_id", "workflow", "workflow_ref", "workflow_sha",
            "head_ref", "base_ref", "event_name", "ref_type", "environment", "job_workflow_ref",
            "job_workflow_sha", "repository_visibility", "runner_environment"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid"],
    }))
}

async fn jwks(State(s): State<Arc<Shared>>) -> Result<Json<Value>, StatusCode> {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if s.jwks_down.load(Ordering::SeqCst) {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let keys = s.keys.lock().unwrap();
    let mut list: Vec<Value> = keys.iter().map(jwk).collect();
    if let Some(ec) = s.ec_key.lock().unwrap().as_ref() {
        // Uncompressed point: 0x04 || x || y.
        let point = ec.public_key().as_ref();
        list.push(json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": EC_KID,
            "x": b64url(&point[1..33]), "y": b64url(&point[33..65]),
        }));
    }
    Ok(Json(json!({ "keys": list })))
}

async fn token_endpoint(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, StatusCode> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !auth.eq_ignore_ascii_case(&format!("bearer {}", s.request_token)) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let aud = q.get("audience").cloned().unwrap_or_default();
    let mut claims = if s.forgejo {
        forgejo_claims(&s, &aud)
    } else {
        github_claims(&s, &aud)
    };
    for (k, v) in s.overrides.lock().unwrap().iter() {
        claims.insert(k.clone(), v.clone());
    }
    if let Some(job) = q.get("job") {
        let jobs = s.jobs.lock().unwrap();
        let job = jobs.get(job).ok_or(StatusCode::NOT_FOUND)?;
        for (k, v) in job {
            claims.insert(k.clone(), v.clone());
        }
    }
    Ok(Json(
        json!({ "count": 1, "value": sign_rs256(&s, &claims) }),
    ))
}

/// GitHub's claim set for a push to main of octo-org/octo-repo, run by build.yml.
fn github_claims(s: &Shared, aud: &str) -> Map<String, Value> {
    let now = now();
    let n = s.jti_counter.fetch_add(1, Ordering::SeqCst);
    let v = json!({
        "jti": format!("jti-{n}-{}", b64url(&rand_bytes())),
        "sub": "repo:octo-org/octo-repo:ref:refs/heads/main",
        "aud": aud,
        "ref": "refs/heads/main",
        "sha": "d6cd1e2bd19e03a81132a23b2025920577f84e37",
        "repository": "octo-org/octo-repo",
        "repository_owner": "octo-org",
        "repository_owner_id": "7000001",
        "repository_id": "42000001",
        "repository_visibility": "private",
        "run_id": "5386839201",
        "run_number": "12",
        "run_attempt": "1",
        "actor": "octocat",
        "actor_id": "583231",
        "workflow": "Build",
        "workflow_ref": "octo-org/octo-repo/.github/workflows/build.yml@refs/heads/main",
        "workflow_sha": "d6cd1e2bd19e03a81132a23b2025920577f84e37",
        "job_workflow_ref": "octo-org/octo-repo/.github/workflows/build.yml@refs/heads/main",
        "job_workflow_sha": "d6cd1e2bd19e03a81132a23b2025920577f84e37",
        "head_ref": "",
        "base_ref": "",
        "event_name": "push",
        "ref_type": "branch",
        "ref_protected": "true",
        "runner_environment": "github-hosted",
        "iss": s.issuer,
        "nbf": now - 5,
        "exp": now + 300,
        "iat": now - 5,
    });
    v.as_object().unwrap().clone()
}

/// What a Forgejo Actions job's token holds (Forgejo's documented set,
/// GitHub's names without its workflow-file claims), with the immutable
/// ids Forgejo added (`repository_id`, `repository_owner_id`, `actor_id`;
/// `sub` with ids is for repositories created since), for
/// forge-org/forge-app on codeberg-like instance.
fn forgejo_claims(s: &Shared, aud: &str) -> Map<String, Value> {
    let now = now();
    let n = s.jti_counter.fetch_add(1, Ordering::SeqCst);
    let v = json!({
        "jti": format!("fj-jti-{n}-{}", b64url(&rand_bytes())),
        "sub": "repo:forge-org/forge-app:ref:refs/heads/main",
        "aud": aud,
        "actor": "frieda",
        "actor_id": "1201",
        "repository": "forge-org/forge-app",
        "repository_id": "3101",
        "repository_owner": "forge-org",
        "repository_owner_id": "2101",
        "ref": "refs/heads/main",
        "ref_type": "branch",
        "sha": "0b1d8a6c5e2f4a3b9c7d6e5f4a3b2c1d0e9f8a7b",
        "workflow": "build.yaml",
        "event_name": "push",
        "run_id": "771",
        "run_number": "9",
        "run_attempt": "1",
        "head_ref": "",
        "base_ref": "",
        "iss": s.issuer,
        "nbf": now - 5,
        "exp": now + 300,
        "iat": now - 5,
    });
    v.as_object().unwrap().clone()
}

/// What GitLab CI puts in a job's `id_tokens:` token (ids as strings,
/// `ref` a bare branch name), for project `acme/tools/app`.
fn gitlab_claims(s: &Shared, aud: &str) -> Map<String, Value> {
    let now = now();
    let n = s.jti_counter.fetch_add(1, Ordering::SeqCst);
    let host = s.issuer.trim_start_matches("https://");
    let v = json!({
        "jti": format!("gl-jti-{n}-{}", b64url(&rand_bytes())),
        "sub": "project_path:acme/tools/app:ref_type:branch:ref:main",
        "aud": aud,
        "namespace_id": "77",
        "namespace_path": "acme/tools",
        "project_id": "4242",
        "project_path": "acme/tools/app",
        "project_visibility": "private",
        "user_id": "31",
        "user_login": "alice",
        "pipeline_id": "987654",
        "pipeline_source": "push",
        "job_id": "1212",
        "ref": "main",
        "ref_type": "branch",
        "ref_path": "refs/heads/main",
        "ref_protected": "true",
        "environment": "production",
        "runner_id": 5,
        "runner_environment": "gitlab-hosted",
        "sha": "714a629c0b401fdce83e847fc9589983fc6f46bc",
        "ci_config_ref_uri": format!("{host}/acme/tools/app//.gitlab-ci.yml@refs/heads/main"),
        "ci_config_sha": "714a629c0b401fdce83e847fc9589983fc6f46bc",
        "project_path_hash": "x",
        "iss": s.issuer,
        "nbf": now - 5,
        "exp": now + 300,
        "iat": now - 5,
    });
    v.as_object().unwrap().clone()
}

fn rand_bytes() -> [u8; 8] {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b
}

fn sign_rs256(s: &Shared, claims: &Map<String, Value>) -> String {
    let keys = s.keys.lock().unwrap();
    let key = keys.last().unwrap();
    let header = json!({"typ": "JWT", "alg": "RS256", "x5t": "x", "kid": key.kid});
    sign_with(&key.pair, &header, claims)
}

fn sign_with(pair: &KeyPair, header: &Value, claims: &Map<String, Value>) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(Value::Object(claims.clone()).to_string().as_bytes())
    );
    let mut sig = vec![0; pair.public_modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", b64url(&sig))
}

/// A TLS listener for axum: the handshake happens in accept (fine for tests).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

fn tls_acceptor(dir: &std::path::Path) -> (tokio_rustls::TlsAcceptor, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair as RcKey};
    let ca_key = RcKey::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "provenix test issuer CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = RcKey::generate().unwrap();
    let leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let ca_path = dir.join("issuer-ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca_path)
}

impl OidcIssuer {
    pub fn start() -> OidcIssuer {
        Self::start_shaped(false)
    }

    /// A Forgejo instance's issuer: at `{base}/api/actions`, its tokens
    /// carrying Forgejo's claim set.
    pub fn start_forgejo() -> OidcIssuer {
        Self::start_shaped(true)
    }

    fn start_shaped(forgejo: bool) -> OidcIssuer {
        let dir = tempfile::tempdir().unwrap();
        let (acceptor, ca_cert) = tls_acceptor(dir.path());
        let std_https = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let std_http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_https.set_nonblocking(true).unwrap();
        std_http.set_nonblocking(true).unwrap();
        let base = format!(
            "https://127.0.0.1:{}",
            std_https.local_addr().unwrap().port()
        );
        let path = if forgejo { "/api/actions" } else { "" };
        let issuer = format!("{base}{path}");
        let request_url = format!(
            "http://127.0.0.1:{}/token?api-version=2.0",
            std_http.local_addr().unwrap().port()
        );
        let request_token = format!("request-{}", b64url(&rand_bytes()));
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            keys: Mutex::new(vec![new_key(1)]),
            ec_key: Mutex::new(None),
            overrides: Mutex::new(Map::new()),
            jobs: Mutex::new(HashMap::new()),
            request_token: request_token.clone(),
            jwks_fetches: AtomicUsize::new(0),
            jwks_down: AtomicBool::new(false),
            jti_counter: AtomicUsize::new(0),
            forgejo,
        });
        let app = Router::new()
            .route(
                &format!("{path}/.well-known/openid-configuration"),
                get(discovery),
            )
            .route(&format!("{path}/.well-known/jwks"), get(jwks))
            .route("/token", get(token_endpoint))
            .with_state(shared.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let https = TlsListener {
                    tcp: tokio::net::TcpListener::from_std(std_https).unwrap(),
                    acceptor,
                };
                let http = tokio::net::TcpListener::from_std(std_http).unwrap();
                let a = axum::serve(https, app.clone());
                let b = axum::serve(http, app);
                let _ = tokio::join!(a, b);
            });
        });
        OidcIssuer {
            issuer,
            base,
            ca_cert,
            request_url,
            request_token,
            shared,
            _dir: dir,
        }
    }

    /// The `[[oidc.issuers]]` entry for a server trusting this issuer.
    pub fn server_toml(&self, name: &str) -> String {
        format!(
            "[[oidc.issuers]]\nname = \"{name}\"\nissuer = \"{}\"\nca-cert = \"{}\"\n",
            self.issuer,
            self.ca_cert.display()
        )
    }

    /// GitHub's claims for a token with audience `aud`, before signing.
    pub fn claims(&self, aud: &str) -> Map<String, Value> {
        github_claims(&self.shared, aud)
    }

    /// Forgejo Actions' claims for a job token with audience `aud`.
    pub fn forgejo_claims(&self, aud: &str) -> Map<String, Value> {
        forgejo_claims(&self.shared, aud)
    }

    /// GitLab CI's claims for a job token with audience `aud`.
    pub fn gitlab_claims(&self, aud: &str) -> Map<String, Value> {
        gitlab_claims(&self.shared, aud)
    }

    /// Signs claims with the issuer's current key (RS256, its kid).
    pub fn sign(&self, claims: &Map<String, Value>) -> String {
        sign_rs256(&self.shared, claims)
    }

    /// Signs with any header, with the current key: for forged algorithms.
    pub fn sign_with_header(&self, header: &Value, claims: &Map<String, Value>) -> String {
        let keys = self.shared.keys.lock().unwrap();
        sign_with(&keys.last().unwrap().pair, header, claims)
    }

    /// A token signed by a key the issuer never published, under its kid.
    pub fn sign_with_stranger_key(&self, claims: &Map<String, Value>) -> String {
        let kid = self.current_kid();
        self.sign_with_kid(claims, &kid)
    }

    /// A token signed by a stranger key under any kid.
    pub fn sign_with_kid(&self, claims: &Map<String, Value>, kid: &str) -> String {
        let stranger = new_key(999);
        sign_with(
            &stranger.pair,
            &json!({"typ": "JWT", "alg": "RS256", "kid": kid}),
            claims,
        )
    }

    pub fn current_kid(&self) -> String {
        self.shared.keys.lock().unwrap().last().unwrap().kid.clone()
    }

    /// The DER of the current public key (PKCS#1), for HS256 confusion.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.shared
            .keys
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .pair
            .public_key()
            .as_ref()
            .to_vec()
    }

    /// Starts signing with a new key (new kid); the JWKS serves only it.
    pub fn rotate_key(&self) {
        let mut keys = self.shared.keys.lock().unwrap();
        let n = keys.len() + 1;
        *keys = vec![new_key(n)];
    }

    /// A `$ACTIONS_ID_TOKEN_REQUEST_URL` of a job of its own, as GitHub
    /// gives each job: its tokens carry `claims` (a run's `run_id`, say)
    /// over the defaults, whatever other jobs ask for at the same time.
    pub fn job_request_url(&self, claims: Value) -> String {
        let mut jobs = self.shared.jobs.lock().unwrap();
        let job = jobs.len().to_string();
        jobs.insert(job.clone(), claims.as_object().unwrap().clone());
        format!("{}&job={job}", self.request_url)
    }

    /// Claims the token endpoint sets in every later token.
    pub fn set_claims(&self, overrides: Value) {
        *self.shared.overrides.lock().unwrap() = overrides.as_object().unwrap().clone();
    }

    /// Publishes an ES256 key too (as some issuers sign with P-256).
    pub fn enable_es256(&self) {
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        *self.shared.ec_key.lock().unwrap() = Some(pair);
    }

    /// Signs with the ES256 key (JWS's fixed r||s signature).
    pub fn sign_es256(&self, claims: &Map<String, Value>) -> String {
        let guard = self.shared.ec_key.lock().unwrap();
        let pair = guard.as_ref().expect("enable_es256 first");
        let header = json!({"typ": "JWT", "alg": "ES256", "kid": EC_KID});
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(Value::Object(claims.clone()).to_string().as_bytes())
        );
        let sig = pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64url(sig.as_ref()))
    }

    /// Makes the JWKS answer 500 (`true`) or serve its keys again.
    pub fn set_jwks_down(&self, down: bool) {
        self.shared.jwks_down.store(down, Ordering::SeqCst);
    }

    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }
}

/// HMAC-SHA256 JWT signed with `secret`: the algorithm-confusion attack.
pub fn sign_hs256(secret: &[u8], claims: &Map<String, Value>, kid: &str) -> String {
    let header = json!({"typ": "JWT", "alg": "HS256", "kid": kid});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(Value::Object(claims.clone()).to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64url(tag.as_ref()))
}

/// An unsigned token (`alg: none`).
pub fn unsigned(claims: &Map<String, Value>) -> String {
    let header = json!({"typ": "JWT", "alg": "none"});
    format!(
        "{}.{}.",
        b64url(header.to_string().as_bytes()),
        b64url(Value::Object(claims.clone()).to_string().as_bytes())
    )
}
