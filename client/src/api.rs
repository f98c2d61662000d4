//! HTTP calls to a provenix server. Server refusals come back as
//! `{code, message}` and become one-line errors naming both.

use anyhow::{anyhow, Context, Result};
pub use provenix_provenance::cache_info::CacheInfo;
use provenix_provenance::upload::{
    MissingPathsRequest, MissingPathsResponse, UploadPathNarInfo, UploadResult, UPLOAD_HEADER,
};
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

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

async fn check(resp: Response) -> Result<Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(e) => Err(anyhow!(
            "{} ({}, HTTP {})",
            e.message,
            e.code,
            status.as_u16()
        )),
        Err(_) => Err(anyhow!("server answered HTTP {status}: {}", text.trim())),
    }
}

impl ApiClient {
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

    pub async fn missing_paths(&self, cache: &str, hashes: Vec<String>) -> Result<Vec<String>> {
        let body = MissingPathsRequest {
            cache: cache.to_string(),
            store_path_hashes: hashes,
        };
        let r: MissingPathsResponse = self
            .json(
                self.request(Method::POST, "_api/v1/get-missing-paths")
                    .json(&body),
            )
            .await?;
        Ok(r.missing_paths)
    }

    pub async fn record_existing_nar(&self, info: &UploadPathNarInfo) -> Result<UploadResult> {
        self.json(
            self.request(Method::POST, "_api/v1/upload-path/existing-nar")
                .json(info),
        )
        .await
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
