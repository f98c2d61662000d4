//! What every request handler shares.

use anyhow::Result;
use std::sync::Arc;

use crate::config::Config;
use crate::db::Db;
use crate::identity::ca::CertificateAuthority;
use crate::identity::oidc::OidcVerifier;
use crate::identity::token::TokenAuthority;
use crate::push::pipeline::Ingestor;
use crate::storage::Storage;

pub struct AppState {
    pub config: Config,
    pub db: Db,
    pub storage: Storage,
    pub tokens: TokenAuthority,
    pub ingestor: Ingestor,
    /// Canonical base URL, always ending in '/'.
    pub api_endpoint: String,
    pub oidc: OidcVerifier,
    pub key_ring: crate::serve::cache_keys::CacheKeyRing,
    pub signed_narinfos: crate::serve::signed_narinfo::SignedNarinfos,
    pub tile_memo: crate::serve::tile_memo::TileMemo,
    pub metrics: crate::operate::metrics::Metrics,
    /// Loaded when a serving mode starts (in the background) or else on
    /// first use: the database may not be migrated when the state is built
    /// (the `db-migrations` mode runs separately).
    ca: tokio::sync::OnceCell<CertificateAuthority>,
}

impl AppState {
    /// `bound`: the address actually listened on, which names this server when
    /// `api-endpoint` is not configured.
    pub async fn new(config: Config, bound: Option<std::net::SocketAddr>) -> Result<Arc<AppState>> {
        let tokens = TokenAuthority::from_config(&config)?;
        let db = Db::connect(&config.database.url).await?;
        let storage = Storage::from_config(&config.storage)?;
        let ingestor = Ingestor {
            db: db.clone(),
            storage: storage.clone(),
            chunking: config.chunking.clone(),
            zstd_level: config.compression.zstd_level(),
        };
        let mut api_endpoint = config.api_endpoint.clone().unwrap_or_else(|| match bound {
            Some(addr) => format!("http://{addr}/"),
            None => format!("http://{}/", config.listen),
        });
        if !api_endpoint.ends_with('/') {
            api_endpoint.push('/');
        }
        let default_audience = config
            .oidc
            .audience
            .clone()
            .or_else(|| config.api_endpoint.is_some().then(|| api_endpoint.clone()));
        let oidc = OidcVerifier::new(&config.oidc.issuers, default_audience.as_deref())?;
        Ok(Arc::new(AppState {
            config,
            db,
            storage,
            tokens,
            ingestor,
            api_endpoint,
            oidc,
            key_ring: Default::default(),
            signed_narinfos: Default::default(),
            tile_memo: Default::default(),
            ca: tokio::sync::OnceCell::new(),
            metrics: crate::operate::metrics::Metrics::new(),
        }))
    }

    pub async fn ca(&self) -> Result<&CertificateAuthority> {
        self.ca
            .get_or_try_init(|| CertificateAuthority::load_or_create(&self.db))
            .await
    }

    pub fn substituter_endpoint(&self) -> String {
        let mut e = self
            .config
            .substituter_endpoint
            .clone()
            .unwrap_or_else(|| self.api_endpoint.clone());
        if !e.ends_with('/') {
            e.push('/');
        }
        e
    }
}
