//! `server.toml`: a superset of Attic's, so Attic's documented examples load
//! with only the environment variable names changed.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const ENV_HS256: &str = "PROVENIX_SERVER_TOKEN_HS256_SECRET_BASE64";
pub const ENV_RS256: &str = "PROVENIX_SERVER_TOKEN_RS256_SECRET_BASE64";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Allowed `Host` headers; empty allows any.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The canonical URL of this server, used in the answers it gives.
    pub api_endpoint: Option<String>,
    pub substituter_endpoint: Option<String>,
    /// Accepted for Attic compatibility; caches are always hard-deleted.
    #[serde(default)]
    pub soft_delete_caches: bool,
    /// When true, a NAR the server holds is only recorded without being sent
    /// again if the uploader can already read it (see docs/threat-model.md).
    #[serde(default = "yes")]
    pub require_proof_of_possession: bool,
    /// When true, anyone may read the provenance of public caches (as with
    /// public transparency logs). Default: the audit permission is needed.
    #[serde(default)]
    pub public_audit: bool,
    /// How long Nix clients (and proxies, for public caches) that honour
    /// `Cache-Control` may keep a narinfo: how fast a revocation reaches them.
    #[serde(default = "default_narinfo_max_age", with = "humantime_serde_compat")]
    pub narinfo_max_age: Duration,
    /// An upload running longer is cut off. GC sweeps stored objects no row
    /// names once they are twice this old (a killed upload's chunks), so
    /// every replica and the garbage collector must agree on it.
    #[serde(
        default = "default_max_upload_duration",
        with = "humantime_serde_compat"
    )]
    pub max_upload_duration: Duration,
    /// The largest request body the proxy in front lets through, announced
    /// to clients, which send larger NARs in parts of this size ("8 MiB",
    /// or bytes; 0: no proxy limit, NARs go in one request). The default
    /// passes nginx's `client_max_body_size 10m` (NixOS's default) and
    /// Cloudflare's 100 MB.
    #[serde(default = "default_max_request_body", with = "byte_size")]
    pub max_request_body: u64,
    pub token_hs256_secret_base64: Option<String>,
    pub token_rs256_secret_base64: Option<String>,
    pub database: DatabaseConfig,
    pub storage: StorageConfig,
    #[serde(default)]
    pub chunking: ChunkingConfig,
    #[serde(default)]
    pub compression: CompressionConfig,
    #[serde(default)]
    pub garbage_collection: GcConfig,
    #[serde(default)]
    pub jwt: JwtConfig,
    #[serde(default)]
    pub oidc: OidcConfig,
    #[serde(default, rename = "signing-keys")]
    pub signing_keys: SigningKeysConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// `[log]`: the caches' transparency logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LogConfig {
    /// How often each serving replica integrates new ledger entries and
    /// signs a checkpoint: the bound on how long a commit waits to be in
    /// a checkpoint (plus one integration's time).
    #[serde(
        default = "default_integrate_interval",
        with = "humantime_serde_compat"
    )]
    pub integrate_interval: Duration,
    /// Witnesses asked to cosign each new checkpoint (tlog-witness).
    #[serde(default)]
    pub witnesses: Vec<WitnessConfig>,
    /// How many witnesses' cosignatures a checkpoint needs before it is
    /// published; default: all configured witnesses.
    #[serde(default)]
    pub witness_quorum: Option<usize>,
}

/// `[[log.witnesses]]`: a witness of every cache's log.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WitnessConfig {
    pub name: String,
    /// Its submission prefix: `<url>/add-checkpoint` is posted to.
    pub url: String,
    /// Its cosignature verifier key (`<name>+<id>+<base64(0x04 || key)>`).
    pub verifier_key: String,
}

impl LogConfig {
    /// The cosignatures a checkpoint needs before it is published.
    pub fn quorum(&self) -> usize {
        self.witness_quorum
            .unwrap_or(self.witnesses.len())
            .min(self.witnesses.len())
    }
}

fn default_integrate_interval() -> Duration {
    Duration::from_millis(250)
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            integrate_interval: default_integrate_interval(),
            witnesses: Vec::new(),
            witness_quorum: None,
        }
    }
}

/// `[metrics]`: who may read `GET /metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MetricsConfig {
    /// Peer addresses (CIDR, or a single address) allowed to scrape; others
    /// get the answer for a missing endpoint. Default: loopback only.
    #[serde(
        default = "default_metrics_allow",
        deserialize_with = "addresses_or_networks"
    )]
    pub allow: Vec<ipnet::IpNet>,
}

/// `::ffff:192.0.2.0/120` is `192.0.2.0/24`: peers are compared as IPv4
/// when they are IPv4-mapped, so a mapped entry must be too.
fn ipv4_mapped_as_ipv4(net: ipnet::IpNet) -> ipnet::IpNet {
    match net {
        ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(ipnet::IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

/// `["10.0.0.0/8", "192.0.2.7", "::1"]`: networks, or addresses as
/// networks of one.
fn addresses_or_networks<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let items: Vec<String> = Deserialize::deserialize(d)?;
    items
        .iter()
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(ipv4_mapped_as_ipv4)
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{s:?} is neither an address nor a network (10.0.0.0/8)"
                    ))
                })
        })
        .collect()
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            allow: default_metrics_allow(),
        }
    }
}

fn default_metrics_allow() -> Vec<ipnet::IpNet> {
    vec![
        "127.0.0.0/8".parse().expect("valid"),
        "::1/128".parse().expect("valid"),
    ]
}

/// `[http]`: what one connection may hold of the server, so that slow or
/// idle clients cannot exhaust it (docs/configuration.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HttpConfig {
    /// A request's headers must arrive within this, counted from when the
    /// connection is ready for a request: it is also how long a kept-alive
    /// connection may wait idle for its next request.
    #[serde(
        default = "default_header_read_timeout",
        with = "humantime_serde_compat"
    )]
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves either way for this long is
    /// closed (a stalled upload, a client that stopped reading a NAR).
    #[serde(default = "default_idle_timeout", with = "humantime_serde_compat")]
    pub idle_timeout: Duration,
    /// The most bytes a request's start line and headers may take (431
    /// beyond). An upload's statement travels in a header: 128 KiB holds
    /// about 2,000 references.
    #[serde(default = "default_max_header_size")]
    pub max_header_size: usize,
    /// Connections served at once; more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// While the server waits for a request body, the client must send at
    /// least this many bytes per second on average, after the grace below.
    #[serde(default = "default_min_body_rate")]
    pub min_body_rate: u64,
    #[serde(default = "default_body_rate_grace", with = "humantime_serde_compat")]
    pub body_rate_grace: Duration,
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_header_size() -> usize {
    128 * 1024
}
fn default_max_connections() -> usize {
    1024
}
fn default_min_body_rate() -> u64 {
    1024
}
fn default_body_rate_grace() -> Duration {
    Duration::from_secs(30)
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            max_header_size: default_max_header_size(),
            max_connections: default_max_connections(),
            min_body_rate: default_min_body_rate(),
            body_rate_grace: default_body_rate_grace(),
        }
    }
}

/// `[oidc]`: the identity providers whose tokens exchange for signing keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OidcConfig {
    /// The `aud` OIDC tokens must carry, for every issuer without its own.
    /// It must name this server alone: a token requested for one server
    /// must not work at another. Unset, `api-endpoint` is used; with
    /// neither, OIDC exchanges are refused (`audience-not-configured`).
    pub audience: Option<String>,
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IssuerConfig {
    /// What trusted publishers call this issuer (`github`).
    pub name: String,
    /// The `iss` claim, exactly; discovery is fetched from
    /// `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// The `aud` tokens must carry; default: `[oidc] audience`, else
    /// `api-endpoint`.
    pub audience: Option<String>,
    /// PEM file of a CA trusted (besides the system's) for this issuer's
    /// HTTPS: private issuers and tests.
    pub ca_cert: Option<PathBuf>,
    /// How long a fetched JWKS is used before it is fetched again. An
    /// unknown `kid` refetches at once (rate-limited).
    #[serde(default = "default_jwks_lifetime", with = "humantime_serde_compat")]
    pub jwks_cache_lifetime: Duration,
    /// After a failed discovery or JWKS fetch, exchanges against this issuer
    /// are refused (`issuer-unavailable`) without fetching again for this
    /// long: at most one fetch per interval while the issuer is down.
    #[serde(
        default = "default_jwks_failure_backoff",
        with = "humantime_serde_compat"
    )]
    pub jwks_failure_backoff: Duration,
    /// Base of the URIs in certificates for GitHub-shaped claims.
    #[serde(default = "default_server_url")]
    pub server_url: String,
}

fn default_jwks_lifetime() -> Duration {
    Duration::from_secs(3600)
}
fn default_jwks_failure_backoff() -> Duration {
    Duration::from_secs(10)
}
fn default_server_url() -> String {
    "https://github.com".into()
}

/// The longest a short-term signing key lives.
pub const MAX_KEY_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// `[signing-keys]`: the short-term keys the exchange certifies.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SigningKeysConfig {
    /// At most 15 minutes.
    #[serde(default = "default_key_lifetime", with = "humantime_serde_compat")]
    pub lifetime: Duration,
    /// How long after its key expired an upload may still complete (its
    /// NAR was streaming when the key ran out). At most 5 minutes: a stolen
    /// key must not open uploads before expiry and finish them for hours.
    #[serde(default = "default_completion_grace", with = "humantime_serde_compat")]
    pub completion_grace: Duration,
}

fn default_completion_grace() -> Duration {
    Duration::from_secs(30)
}

/// The longest `completion-grace` may be.
pub const MAX_COMPLETION_GRACE: Duration = Duration::from_secs(5 * 60);

fn default_key_lifetime() -> Duration {
    MAX_KEY_LIFETIME
}

impl Default for SigningKeysConfig {
    fn default() -> Self {
        SigningKeysConfig {
            lifetime: default_key_lifetime(),
            completion_grace: default_completion_grace(),
        }
    }
}

fn default_max_upload_duration() -> Duration {
    Duration::from_secs(12 * 3600)
}

fn default_narinfo_max_age() -> Duration {
    Duration::from_secs(60)
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    /// Accepted for Attic compatibility.
    #[serde(default)]
    pub heartbeat: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum StorageConfig {
    Local {
        path: PathBuf,
    },
    S3 {
        region: String,
        bucket: String,
        endpoint: Option<String>,
        credentials: Option<S3Credentials>,
        /// How one S3 request may take, body included, before it fails
        /// (and is retried).
        #[serde(
            default = "default_s3_request_timeout",
            alias = "request-timeout",
            with = "humantime_serde_compat"
        )]
        request_timeout: Duration,
        #[serde(
            default = "default_s3_connect_timeout",
            alias = "connect-timeout",
            with = "humantime_serde_compat"
        )]
        connect_timeout: Duration,
        /// Retries of a failed request (5xx, reset, timeout), with backoff.
        #[serde(default = "default_s3_max_retries", alias = "max-retries")]
        max_retries: usize,
        /// No retry starts later than this after the first attempt.
        #[serde(
            default = "default_s3_retry_timeout",
            alias = "retry-timeout",
            with = "humantime_serde_compat"
        )]
        retry_timeout: Duration,
    },
}

// object_store's own defaults, written down so they can be read and changed.
fn default_s3_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_s3_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_s3_max_retries() -> usize {
    10
}
fn default_s3_retry_timeout() -> Duration {
    Duration::from_secs(180)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Credentials {
    #[serde(alias = "access-key-id")]
    pub access_key_id: String,
    #[serde(alias = "secret-access-key")]
    pub secret_access_key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ChunkingConfig {
    /// NARs smaller than this are stored as one chunk.
    pub nar_size_threshold: usize,
    pub min_size: usize,
    pub avg_size: usize,
    pub max_size: usize,
}

impl Default for ChunkingConfig {
    // Attic's defaults.
    fn default() -> Self {
        ChunkingConfig {
            nar_size_threshold: 64 * 1024,
            min_size: 16 * 1024,
            avg_size: 64 * 1024,
            max_size: 256 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionType {
    None,
    Zstd,
    /// Attic's other choices: accepted, stored as zstd (see docs/configuration.md).
    Brotli,
    Xz,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CompressionConfig {
    #[serde(rename = "type")]
    pub kind: CompressionType,
    pub level: Option<i32>,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            kind: CompressionType::Zstd,
            level: None,
        }
    }
}

/// zstd level 2: chunks of ~64 KiB are compressed one by one, which takes
/// most of level 3's advantage away (1.5% smaller on real binaries) while
/// level 3 costs a third more CPU; Attic's level 8 costs several times more.
/// Measured in docs/performance.md.
pub const DEFAULT_ZSTD_LEVEL: i32 = 2;

impl CompressionConfig {
    /// What chunks are stored as: `Some(level)` for zstd, `None` for raw.
    pub fn zstd_level(&self) -> Option<i32> {
        match self.kind {
            CompressionType::None => None,
            _ => Some(self.level.unwrap_or(DEFAULT_ZSTD_LEVEL)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GcConfig {
    #[serde(default = "default_gc_interval", with = "humantime_serde_compat")]
    pub interval: Duration,
    /// Zero: paths are kept until deleted (per-cache retention still applies).
    #[serde(default, with = "humantime_serde_compat")]
    pub default_retention_period: Duration,
    /// How long an unreferenced chunk is kept after its last use, so an
    /// upload that just found it can still claim it.
    #[serde(default = "default_chunk_grace", with = "humantime_serde_compat")]
    pub chunk_grace_period: Duration,
    /// The most compressed NAR bytes all caches together may hold ("500
    /// GiB"); over it, GC evicts the least recently used paths no pin
    /// holds. Unset: no limit (per-cache limits still apply).
    #[serde(default, with = "byte_size_opt")]
    pub max_stored_size: Option<i64>,
}

fn default_chunk_grace() -> Duration {
    Duration::from_secs(600)
}

fn default_gc_interval() -> Duration {
    Duration::from_secs(12 * 3600)
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval: default_gc_interval(),
            default_retention_period: Duration::ZERO,
            chunk_grace_period: default_chunk_grace(),
            max_stored_size: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct JwtConfig {
    pub token_bound_issuer: Option<String>,
    pub token_bound_audiences: Option<Vec<String>>,
    #[serde(default)]
    pub signing: Option<JwtSigningConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct JwtSigningConfig {
    pub token_hs256_secret_base64: Option<String>,
    pub token_rs256_secret_base64: Option<String>,
    pub token_rs256_pubkey_base64: Option<String>,
}

mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

fn default_max_request_body() -> u64 {
    8 << 20
}

/// A size written as people write it ("8 MiB") or a number of bytes.
mod byte_size {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Bytes(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Written::deserialize(d)? {
            Written::Bytes(b) => Ok(b),
            Written::Text(t) => provenix_policy::retention::parse_byte_size(&t)
                .map_err(serde::de::Error::custom)
                .and_then(|b| u64::try_from(b).map_err(serde::de::Error::custom)),
        }
    }
}

/// A size written as people write it ("100 GiB") or a number of bytes.
mod byte_size_opt {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Bytes(i64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let bytes = match Written::deserialize(d)? {
            Written::Bytes(b) => b,
            Written::Text(t) => {
                provenix_policy::retention::parse_byte_size(&t).map_err(serde::de::Error::custom)?
            }
        };
        provenix_policy::retention::check_max_stored_size(bytes)
            .map_err(|e| serde::de::Error::custom(e.message))?;
        Ok(Some(bytes))
    }
}

/// Parses "12 hours", "6 months", "30s", "0".
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).with_context(|| format!("invalid duration {s:?}"))
}

/// The secret that signs and verifies tokens.
#[derive(Clone)]
pub enum TokenSecret {
    Hs256(Vec<u8>),
    /// PEM of an RSA private key.
    Rs256(Vec<u8>),
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| without_snippet(text, &e))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let c = &self.chunking;
        if !(c.min_size <= c.avg_size && c.avg_size <= c.max_size) {
            bail!("[chunking]: need min-size <= avg-size <= max-size");
        }
        if c.min_size < 64 || c.avg_size < 256 || c.max_size < 1024 || c.max_size > 16 << 20 {
            bail!("[chunking]: sizes out of range (min-size >= 64, avg-size >= 256, 1 KiB <= max-size <= 16 MiB)");
        }
        if !c.min_size.is_multiple_of(2)
            || !c.avg_size.is_multiple_of(2)
            || !c.max_size.is_multiple_of(2)
        {
            bail!("[chunking]: sizes must be even");
        }
        if let Some(level) = self.compression.level {
            if !(1..=22).contains(&level) {
                bail!("[compression] level must be between 1 and 22");
            }
        }
        if !(self.database.url.starts_with("sqlite:") || self.database.url.starts_with("postgres"))
        {
            bail!("[database] url must start with sqlite:// or postgres://");
        }
        let min_part = provenix_provenance::upload_parts::MIN_PART_SIZE;
        if self.max_request_body != 0 && !(min_part..=4 << 30).contains(&self.max_request_body) {
            bail!("max-request-body must be 0 (no limit) or between {min_part} bytes and 4 GiB");
        }
        if self.max_upload_duration < Duration::from_secs(1) {
            bail!("max-upload-duration must be at least 1 second");
        }
        let witnesses = &self.log.witnesses;
        for (i, w) in witnesses.iter().enumerate() {
            if witnesses[..i]
                .iter()
                .any(|o| o.name == w.name || o.verifier_key == w.verifier_key)
            {
                bail!("[[log.witnesses]]: {:?} is listed twice", w.name);
            }
            provenix_provenance::tlog::witness::CosignatureVerifier::new(&w.verifier_key)
                .map_err(|e| anyhow::anyhow!("[[log.witnesses]] {:?}: {e}", w.name))?;
        }
        if self.log.witness_quorum.is_some_and(|q| q > witnesses.len()) {
            bail!(
                "[log] witness-quorum is more than the {} witnesses listed",
                witnesses.len()
            );
        }
        let lifetime = self.signing_keys.lifetime;
        if lifetime > MAX_KEY_LIFETIME || lifetime < Duration::from_secs(1) {
            bail!("[signing-keys] lifetime must be between 1 second and 15 minutes");
        }
        if self.signing_keys.completion_grace > MAX_COMPLETION_GRACE {
            bail!("[signing-keys] completion-grace must be at most 5 minutes");
        }
        let h = &self.http;
        let second = Duration::from_secs(1);
        if !(second..=Duration::from_secs(600)).contains(&h.header_read_timeout) {
            bail!("[http] header-read-timeout must be between 1 second and 10 minutes");
        }
        if !(second..=Duration::from_secs(3600)).contains(&h.idle_timeout) {
            bail!("[http] idle-timeout must be between 1 second and 1 hour");
        }
        if !(8192..=16 << 20).contains(&h.max_header_size) {
            bail!("[http] max-header-size must be between 8192 and 16777216 bytes");
        }
        if !(1..=1_000_000).contains(&h.max_connections) {
            bail!("[http] max-connections must be between 1 and 1000000");
        }
        if h.body_rate_grace < second || h.body_rate_grace > Duration::from_secs(3600) {
            bail!("[http] body-rate-grace must be between 1 second and 1 hour");
        }
        let mut names = std::collections::HashSet::new();
        for i in &self.oidc.issuers {
            if !names.insert(i.name.as_str()) {
                bail!("[[oidc.issuers]]: the name {:?} is used twice", i.name);
            }
            if i.name.is_empty()
                || !i
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                bail!(
                    "[[oidc.issuers]]: name {:?} must be letters, digits, - _ .",
                    i.name
                );
            }
            // Discovery over plain HTTP would let the network choose the keys.
            if !i.issuer.starts_with("https://") {
                bail!(
                    "[[oidc.issuers]] {}: issuer must be an https:// URL",
                    i.name
                );
            }
            if i.jwks_failure_backoff > Duration::from_secs(3600) {
                bail!(
                    "[[oidc.issuers]] {}: jwks-failure-backoff must be at most 1 hour",
                    i.name
                );
            }
            if i.audience.as_deref().or(self.oidc.audience.as_deref()) == Some("") {
                bail!(
                    "[[oidc.issuers]] {}: the audience must not be empty",
                    i.name
                );
            }
        }
        Ok(())
    }

    /// Token secret, from the environment first, then the config file.
    pub fn token_secret(&self) -> Result<TokenSecret> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let signing = self.jwt.signing.clone().unwrap_or_default();
        let hs = std::env::var(ENV_HS256)
            .ok()
            .or_else(|| signing.token_hs256_secret_base64.clone())
            .or_else(|| self.token_hs256_secret_base64.clone());
        let rs = std::env::var(ENV_RS256)
            .ok()
            .or_else(|| signing.token_rs256_secret_base64.clone())
            .or_else(|| self.token_rs256_secret_base64.clone());
        match (hs, rs) {
            (_, Some(rs)) => {
                let pem = b64
                    .decode(rs.trim())
                    .context("RS256 token secret is not base64")?;
                Ok(TokenSecret::Rs256(pem))
            }
            (Some(hs), None) => {
                let key = b64
                    .decode(hs.trim())
                    .context("HS256 token secret is not base64")?;
                if key.len() < 32 {
                    bail!("HS256 token secret must be at least 32 bytes");
                }
                Ok(TokenSecret::Hs256(key))
            }
            (None, None) => {
                bail!("no token secret: set token-hs256-secret-base64 in the config or {ENV_HS256}")
            }
        }
    }
}

/// Where the embedded defaults live: `$XDG_CONFIG_HOME/provenix/server.toml`
/// and `$XDG_DATA_HOME/provenix/` (as Attic uses ~/.config/attic).
pub fn default_paths() -> Result<(PathBuf, PathBuf)> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    // An empty XDG variable counts as unset (the XDG base directory spec).
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let config_home = var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".config")))
        .context("neither XDG_CONFIG_HOME nor HOME is set")?;
    let data_home = var("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".local/share")))
        .context("neither XDG_DATA_HOME nor HOME is set")?;
    Ok((
        config_home.join("provenix/server.toml"),
        data_home.join("provenix"),
    ))
}

/// toml's error as "line N: what", without the snippet of the file it
/// would quote: the line may hold a secret (a token secret, S3 keys), and
/// the error goes to the log.
fn without_snippet(text: &str, e: &toml::de::Error) -> anyhow::Error {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            anyhow::anyhow!("line {line}: {}", e.message().trim())
        }
        None => anyhow::anyhow!("{}", e.message().trim()),
    }
}

/// The config written on first run: SQLite and local storage in `data_dir`,
/// a fresh HS256 secret.
pub fn default_config_text(data_dir: &Path) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut secret = [0u8; 64];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let secret = base64::engine::general_purpose::STANDARD.encode(secret);
    let mut server_id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut server_id);
    let audience = format!("provenix:{}", hex::encode(server_id));
    let data = data_dir.display();
    format!(
        r#"# provenixd configuration, written on first run. See docs/configuration.md.
listen = "127.0.0.1:8080"
# The URL clients reach this server by (behind a proxy: the public URL).
# Unset, it is the address listened on (`--listen` included).
# api-endpoint = "https://cache.example.com/"
allowed-hosts = []

# Signs the access tokens this server issues. Keep it secret.
token-hs256-secret-base64 = "{secret}"

[database]
url = "sqlite://{data}/server.db?mode=rwc"

[storage]
type = "local"
path = "{data}/storage"

[chunking]
nar-size-threshold = 65536
min-size = 16384
avg-size = 65536
max-size = 262144

[compression]
type = "zstd"
level = 2

[garbage-collection]
interval = "12 hours"
default-retention-period = "0"

# CI jobs exchange their OIDC token for a short-term signing key when a
# trusted publisher of the cache matches (provenix publisher add ...).
[oidc]
# The audience CI jobs request their tokens for: this server's alone, so a
# token meant for another server is refused here. Generated on first run.
audience = "{audience}"

[[oidc.issuers]]
name = "github"
issuer = "https://token.actions.githubusercontent.com"
# audience = "..."   # default: [oidc] audience, else api-endpoint

[signing-keys]
lifetime = "15 minutes"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attic's documented `server.toml` (its generated default), verbatim.
    const ATTIC_EXAMPLE: &str = r#"
listen = "[::]:8080"
allowed-hosts = []
#api-endpoint = "https://your.domain.tld/"
#soft-delete-caches = false
#require-proof-of-possession = true

[database]
url = "sqlite:///var/lib/atticd/server.db?mode=rwc"
#heartbeat = false

[storage]
type = "local"
path = "/var/lib/atticd/storage"

[chunking]
nar-size-threshold = 65536
min-size = 16384
avg-size = 65536
max-size = 262144

[compression]
type = "zstd"
#level = 8

[garbage-collection]
interval = "12 hours"
#default-retention-period = "6 months"
# The most all caches together may hold (compressed NARs); least recently
# used paths no pin holds are evicted past it. Caches can set their own
# (provenix cache configure CACHE --max-stored-size 50GiB).
#max-stored-size = "500 GiB"

[jwt]
#token-bound-issuer = "some-issuer"
#token-bound-audiences = ["some-audience1", "some-audience2"]

[jwt.signing]
token-rs256-secret-base64 = "LS0tLS1CRUdJTg=="
"#;

    #[test]
    fn loads_attics_example() {
        let c = Config::parse(ATTIC_EXAMPLE).unwrap();
        assert_eq!(c.listen, "[::]:8080");
        assert_eq!(c.chunking.avg_size, 65536);
        assert_eq!(
            c.garbage_collection.interval,
            Duration::from_secs(12 * 3600)
        );
        assert!(matches!(c.storage, StorageConfig::Local { .. }));
        assert!(matches!(c.token_secret().unwrap(), TokenSecret::Rs256(_)));
    }

    #[test]
    fn loads_attics_s3_example() {
        let text = r#"
token-hs256-secret-base64 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
[database]
url = "postgres://attic@localhost/attic"
[storage]
type = "s3"
region = "us-east-1"
bucket = "attic"
endpoint = "https://s3.example"
[storage.credentials]
access_key_id = "AK"
secret_access_key = "SK"
[garbage-collection]
default-retention-period = "6 months"
"#;
        let c = Config::parse(text).unwrap();
        assert!(matches!(c.storage, StorageConfig::S3 { .. }));
        assert!(c.garbage_collection.default_retention_period > Duration::from_secs(86400 * 150));
    }

    #[test]
    fn witnesses_are_listed_once_and_the_quorum_is_reachable() {
        let key = provenix_provenance::tlog::witness::Cosigner::new(
            "w.example/1",
            ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
        )
        .unwrap()
        .verifier_key();
        let base = default_config_text(Path::new("/tmp/x"));
        let with = |extra: &str| Config::parse(&format!("{base}\n{extra}"));
        let one = format!(
            "[log]\nwitness-quorum = 1\n[[log.witnesses]]\nname = \"w.example/1\"\nurl = \"http://w\"\nverifier-key = \"{key}\"\n"
        );
        assert_eq!(with(&one).unwrap().log.quorum(), 1);
        let twice = format!(
            "{one}[[log.witnesses]]\nname = \"w.example/2\"\nurl = \"http://w\"\nverifier-key = \"{key}\"\n"
        );
        assert!(with(&twice)
            .unwrap_err()
            .to_string()
            .contains("listed twice"));
        let too_many = one.replace("witness-quorum = 1", "witness-quorum = 2");
        assert!(with(&too_many)
            .unwrap_err()
            .to_string()
            .contains("witness-quorum"));
        let bad_key = one.replace(&key, "w.example/1+00000000+AAAA");
        assert!(with(&bad_key).is_err());
    }

    #[test]
    fn default_config_round_trips() {
        let c = Config::parse(&default_config_text(Path::new("/tmp/x"))).unwrap();
        assert!(c.database.url.starts_with("sqlite:///tmp/x/"));
        assert!(matches!(c.token_secret().unwrap(), TokenSecret::Hs256(_)));
        let other = Config::parse(&default_config_text(Path::new("/tmp/x"))).unwrap();
        let audience = c.oidc.audience.expect("first run names an audience");
        assert!(audience.starts_with("provenix:"), "{audience}");
        assert_ne!(Some(audience), other.oidc.audience, "audiences are unique");
    }

    #[test]
    fn errors_do_not_quote_the_file() {
        let text = default_config_text(Path::new("/x"));
        let secret_line = text
            .lines()
            .find(|l| l.starts_with("token-hs256-secret-base64"))
            .unwrap();
        let broken = text.replace(secret_line, &format!("{secret_line} x"));
        let message = format!("{:#}", Config::parse(&broken).unwrap_err());
        let secret = secret_line.split('"').nth(1).unwrap();
        assert!(!message.contains(secret), "{message}");
        assert!(message.starts_with("line "), "{message}");
    }

    #[test]
    fn rejects_nonsense() {
        assert!(Config::parse("listen = 1").is_err());
        let bad_chunks =
            default_config_text(Path::new("/x")).replace("min-size = 16384", "min-size = 999999");
        assert!(Config::parse(&bad_chunks).is_err());
        let typo = default_config_text(Path::new("/x")).replace("listen =", "lisen =");
        assert!(Config::parse(&typo).is_err());
    }
}
