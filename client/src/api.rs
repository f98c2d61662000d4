//! HTTP calls to a provenix server. Server refusals come back as
//! `{code, message}` and become one-line errors naming both.

use anyhow::{bail, Context, Result};
use provenix_policy::publisher::RegisteredPublisher;
use provenix_policy::Publisher;
use provenix_provenance::audit::{AuditQuery, Page, Provenance};
pub use provenix_provenance::cache_info::{CacheInfo, CacheListing};
use provenix_provenance::exchange::{AudienceResponse, ExchangeRequest, ExchangeResponse};
use provenix_provenance::pin::{Pin, PinAnswer, PinChange, PinRequest};
use provenix_provenance::revocation::{RevokeRequest, RevokeResponse, RevokedPath};
use provenix_provenance::upload::{
    MissingPathsRequest, MissingPathsResponse, UploadPathNarInfo, UploadResult, UPLOAD_HEADER,
};
use provenix_provenance::upload_parts::{PartReceived, UploadSession, UploadSessionStart};
use provenix_provenance::ErrorCode;
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::ServerConfig;

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    endpoint: String,
    token: Option<String>,
}

/// The refusal body as sent; the code is kept as spelt too, so a code
/// newer than this client still shows in the error.
#[derive(Deserialize)]
struct WireError {
    code: String,
    message: String,
}

/// A refusal by the server, kept typed so callers can react to its code
/// (`key-expired` renews the key and retries).
#[derive(Debug)]
pub struct ServerError {
    pub code: ErrorCode,
    pub wire_code: String,
    pub message: String,
    pub status: u16,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, HTTP {})",
            self.message, self.wire_code, self.status
        )
    }
}

impl std::error::Error for ServerError {}

/// The server's error code, if `e` is a server refusal.
pub fn error_code(e: &anyhow::Error) -> Option<ErrorCode> {
    e.chain()
        .find_map(|c| c.downcast_ref::<ServerError>())
        .map(|s| s.code)
}

async fn check(resp: Response) -> Result<Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<WireError>(&text) {
        Ok(e) => Err(ServerError {
            code: ErrorCode::from_wire(&e.code),
            wire_code: e.code,
            message: e.message,
            status: status.as_u16(),
        }
        .into()),
        Err(_) => Err(PlainHttpError {
            status: status.as_u16(),
            text: text.trim().to_string(),
        }
        .into()),
    }
}

/// A refusal that is not the server's JSON (a proxy's error page).
#[derive(Debug)]
pub struct PlainHttpError {
    pub status: u16,
    pub text: String,
}

impl std::fmt::Display for PlainHttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "server answered HTTP {}: {}", self.status, self.text)
    }
}

impl std::error::Error for PlainHttpError {}

/// Whether trying the same request again may succeed: the server or a
/// proxy could not be reached or answered that it is unavailable, or the
/// connection broke mid-request.
pub fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        if let Some(s) = c.downcast_ref::<ServerError>() {
            return matches!(
                s.code,
                ErrorCode::Retry
                    | ErrorCode::StorageUnavailable
                    | ErrorCode::DatabaseUnavailable
                    | ErrorCode::UploadInterrupted
                    | ErrorCode::NotReady
            ) || matches!(s.status, 502..=504);
        }
        if let Some(p) = c.downcast_ref::<PlainHttpError>() {
            return matches!(p.status, 502..=504 | 429);
        }
        c.downcast_ref::<reqwest::Error>()
            .is_some_and(|r| r.is_connect() || r.is_timeout() || r.is_request() || r.is_body())
    })
}

impl ApiClient {
    /// The server's base URL, as logged in to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn new(server: &ServerConfig) -> Result<ApiClient> {
        let mut endpoint = server.endpoint.clone();
        if !endpoint.ends_with('/') {
            endpoint.push('/');
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("provenix/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(ApiClient {
            http,
            endpoint,
            token: server.token.clone(),
        })
    }

    /// The same server, calling with another token (or none).
    pub fn with_token(&self, token: Option<String>) -> ApiClient {
        ApiClient {
            token,
            ..self.clone()
        }
    }

    pub async fn audience(&self) -> Result<AudienceResponse> {
        self.json(self.request(Method::GET, "_api/v1/oidc/audience"))
            .await
    }

    pub async fn exchange(&self, req: &ExchangeRequest) -> Result<ExchangeResponse> {
        self.json(
            self.request(Method::POST, "_api/v1/keys/exchange")
                .json(req),
        )
        .await
    }

    pub async fn whoami(&self) -> Result<serde_json::Value> {
        self.json(self.request(Method::GET, "_api/v1/whoami")).await
    }

    pub async fn publishers(&self, cache: &str) -> Result<Vec<RegisteredPublisher>> {
        self.json(self.request(
            Method::GET,
            &format!("_api/v1/cache-config/{cache}/publishers"),
        ))
        .await
    }

    pub async fn add_publisher(&self, cache: &str, p: &Publisher) -> Result<RegisteredPublisher> {
        self.json(
            self.request(
                Method::POST,
                &format!("_api/v1/cache-config/{cache}/publishers"),
            )
            .json(p),
        )
        .await
    }

    pub async fn remove_publisher(&self, cache: &str, id: i64) -> Result<()> {
        let _: serde_json::Value = self
            .json(self.request(
                Method::DELETE,
                &format!("_api/v1/cache-config/{cache}/publishers/{id}"),
            ))
            .await?;
        Ok(())
    }

    pub async fn pins(&self, cache: &str) -> Result<Vec<Pin>> {
        self.json(self.request(Method::GET, &format!("_api/v1/cache-config/{cache}/pins")))
            .await
    }

    pub async fn pin(&self, cache: &str, name: &str, req: &PinRequest) -> Result<PinAnswer> {
        self.json(
            self.request(
                Method::PUT,
                &format!("_api/v1/cache-config/{cache}/pins/{name}"),
            )
            .json(req),
        )
        .await
    }

    pub async fn remove_pin(&self, cache: &str, name: &str) -> Result<()> {
        let _: serde_json::Value = self
            .json(self.request(
                Method::DELETE,
                &format!("_api/v1/cache-config/{cache}/pins/{name}"),
            ))
            .await?;
        Ok(())
    }

    pub async fn pin_changes(&self, cache: &str) -> Result<Vec<PinChange>> {
        self.json(self.request(Method::GET, &format!("_api/v1/cache/{cache}/pin-changes")))
            .await
    }

    pub async fn provenance(&self, cache: &str, path: &str) -> Result<Provenance> {
        let base = path.rsplit('/').next().unwrap_or(path);
        self.json(self.request(
            Method::GET,
            &format!("_api/v1/cache/{cache}/provenance/{base}"),
        ))
        .await
    }

    pub async fn in_toto(&self, cache: &str, path: &str) -> Result<serde_json::Value> {
        let base = path.rsplit('/').next().unwrap_or(path);
        self.json(self.request(
            Method::GET,
            &format!("_api/v1/cache/{cache}/provenance/{base}/in-toto"),
        ))
        .await
    }

    pub async fn revoke(&self, req: &RevokeRequest) -> Result<RevokeResponse> {
        self.json(self.request(Method::POST, "_api/v1/revoke").json(req))
            .await
    }

    /// One page of the feed of paths revoked from `cache`, after `cursor`.
    pub async fn revoked_paths(&self, cache: &str, cursor: i64) -> Result<Page<RevokedPath>> {
        self.json(self.request(
            Method::GET,
            &format!("_api/v1/cache/{cache}/revoked-paths?cursor={cursor}"),
        ))
        .await
    }

    /// `what`: `uploads`, `keys` or `divergences`.
    pub async fn audit<T: DeserializeOwned>(
        &self,
        cache: &str,
        what: &str,
        q: &AuditQuery,
    ) -> Result<Page<T>> {
        let mut path = format!("_api/v1/cache/{cache}/{what}");
        let pairs: Vec<(String, String)> = serde_json::to_value(q)?
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                        (k.clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !pairs.is_empty() {
            let mut url = reqwest::Url::parse("http://x/").expect("static URL");
            url.query_pairs_mut().extend_pairs(pairs);
            path.push('?');
            path.push_str(url.query().unwrap_or_default());
        }
        self.json(self.request(Method::GET, &path)).await
    }

    /// GitHub Actions' OIDC token for `audience`: GET
    /// `$ACTIONS_ID_TOKEN_REQUEST_URL&audience=...` with the request token.
    pub async fn github_oidc_token(
        &self,
        request_url: &str,
        request_token: &str,
        audience: &str,
    ) -> Result<String> {
        #[derive(Deserialize)]
        struct TokenAnswer {
            value: String,
        }
        let mut url = reqwest::Url::parse(request_url)
            .context("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL")?;
        url.query_pairs_mut().append_pair("audience", audience);
        let resp = self
            .http
            .get(url)
            .bearer_auth(request_token)
            .send()
            .await
            .context("cannot reach GitHub Actions' OIDC token endpoint")?;
        let status = resp.status();
        if !status.is_success() {
            bail!(
                "GitHub Actions' OIDC token endpoint answered HTTP {status} (does the job have `permissions: id-token: write`?)"
            );
        }
        let answer: TokenAnswer = resp
            .json()
            .await
            .context("GitHub Actions' OIDC token endpoint answered no token")?;
        Ok(answer.value)
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.endpoint));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    async fn json<T: DeserializeOwned>(&self, r: RequestBuilder) -> Result<T> {
        let resp = r
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.endpoint))?;
        Ok(check(resp).await?.json().await?)
    }

    /// A file of the cache's transparency log (`checkpoint`, `tile/...`).
    pub async fn log_file(&self, cache: &str, rel: &str) -> Result<Vec<u8>> {
        let resp = self
            .request(Method::GET, &format!("{cache}/tlog/{rel}"))
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.endpoint))?;
        // No file of a log is larger than a full bundle (256 entries behind
        // u16 lengths); a checkpoint is a few lines.
        let cap: usize = if rel == "checkpoint" {
            1 << 20
        } else {
            256 * (65_535 + 2)
        };
        let mut resp = check(resp).await?;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            if body.len() + chunk.len() > cap {
                return Err(crate::tlog::Tampered(format!(
                    "the log's {rel} is larger than any the specification allows ({cap} bytes)"
                ))
                .into());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    pub async fn list_caches(&self) -> Result<Vec<CacheListing>> {
        self.json(self.request(Method::GET, "_api/v1/caches")).await
    }

    pub async fn cache_info(&self, cache: &str) -> Result<CacheInfo> {
        self.json(self.request(Method::GET, &format!("_api/v1/cache-config/{cache}")))
            .await
    }

    pub async fn create_cache(&self, cache: &str, body: &serde_json::Value) -> Result<CacheInfo> {
        self.json(
            self.request(Method::POST, &format!("_api/v1/cache-config/{cache}"))
                .json(body),
        )
        .await
    }

    pub async fn configure_cache(
        &self,
        cache: &str,
        body: &serde_json::Value,
    ) -> Result<CacheInfo> {
        self.json(
            self.request(Method::PATCH, &format!("_api/v1/cache-config/{cache}"))
                .json(body),
        )
        .await
    }

    pub async fn destroy_cache(&self, cache: &str) -> Result<()> {
        let _: serde_json::Value = self
            .json(self.request(Method::DELETE, &format!("_api/v1/cache-config/{cache}")))
            .await?;
        Ok(())
    }

    pub async fn delete_path(&self, cache: &str, hash: &str) -> Result<()> {
        let _: serde_json::Value = self
            .json(self.request(
                Method::DELETE,
                &format!("_api/v1/cache/{cache}/paths/{hash}"),
            ))
            .await?;
        Ok(())
    }

    /// Which of the paths (store path hash, NAR hash) the cache lacks, and
    /// of those, which the server holds the NAR of for this caller.
    pub async fn missing_paths(
        &self,
        cache: &str,
        paths: Vec<(String, provenix_provenance::NarHash)>,
    ) -> Result<MissingPathsResponse> {
        let (store_path_hashes, nar_hashes) = paths.into_iter().unzip();
        let body = MissingPathsRequest {
            cache: cache.to_string(),
            store_path_hashes,
            nar_hashes,
        };
        self.json(
            self.request(Method::POST, "_api/v1/get-missing-paths")
                .json(&body),
        )
        .await
    }

    pub async fn record_existing_nar(&self, info: &UploadPathNarInfo) -> Result<UploadResult> {
        self.json(
            self.request(Method::POST, "_api/v1/upload-path/existing-nar")
                .json(info),
        )
        .await
    }

    pub async fn record_closure_statement(
        &self,
        st: &provenix_provenance::closure::ClosureStatement,
    ) -> Result<provenix_provenance::closure::ClosureResult> {
        self.json(
            self.request(Method::POST, "_api/v1/closure-statements")
                .json(st),
        )
        .await
    }

    pub async fn start_upload_session(
        &self,
        info: &UploadPathNarInfo,
    ) -> Result<UploadSessionStart> {
        self.json(
            self.request(Method::POST, "_api/v1/upload-sessions")
                .json(info),
        )
        .await
    }

    pub async fn upload_session(&self, id: &str) -> Result<UploadSession> {
        self.json(self.request(Method::GET, &format!("_api/v1/upload-sessions/{id}")))
            .await
    }

    pub async fn upload_part(
        &self,
        id: &str,
        part: u64,
        bytes: bytes::Bytes,
    ) -> Result<PartReceived> {
        self.json(
            self.request(
                Method::PUT,
                &format!("_api/v1/upload-sessions/{id}/parts/{part}"),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes),
        )
        .await
    }

    pub async fn complete_upload(&self, id: &str) -> Result<UploadResult> {
        self.json(self.request(
            Method::POST,
            &format!("_api/v1/upload-sessions/{id}/complete"),
        ))
        .await
    }

    pub async fn cancel_upload(&self, id: &str) -> Result<()> {
        check(
            self.request(Method::DELETE, &format!("_api/v1/upload-sessions/{id}"))
                .send()
                .await?,
        )
        .await?;
        Ok(())
    }

    pub async fn upload(
        &self,
        info: &UploadPathNarInfo,
        body: reqwest::Body,
    ) -> Result<UploadResult> {
        let r = self
            .request(Method::PUT, "_api/v1/upload-path")
            .header(UPLOAD_HEADER, serde_json::to_string(info)?)
            .header(reqwest::header::CONTENT_TYPE, "application/x-nix-nar")
            .body(body);
        self.json(r).await
    }
}
