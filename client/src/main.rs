//! provenix: the command-line client. Mirrors Attic's CLI.

mod api;
mod audit;
mod config;
mod exchange;
mod files;
mod nix;
mod push;
mod revocation;
mod use_cache;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::api::{ApiClient, CacheInfo};
use crate::config::{ClientConfig, ServerConfig};

#[derive(Parser)]
#[command(name = "provenix", version, about = "provenix binary cache client")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Save a server and its token: `provenix login NAME URL [TOKEN]`.
    Login {
        name: String,
        url: String,
        token: Option<String>,
        /// Make this the default server (the first login always is).
        #[arg(long)]
        set_default: bool,
    },
    /// Configure Nix to substitute from a cache (nix.conf, trusted keys, netrc).
    Use { cache: String },
    /// Push store paths and their closures to a cache.
    Push {
        /// `[SERVER:]CACHE`
        cache: String,
        #[arg(required = true)]
        paths: Vec<String>,
        /// Uploads in parallel.
        #[arg(short = 'j', long, default_value_t = 5)]
        jobs: usize,
        /// Push only the given paths, not their closures.
        #[arg(long)]
        no_closure: bool,
        /// The local store to read from (default: Nix's, or NIX_REMOTE).
        #[arg(long)]
        store: Option<String>,
    },
    /// Manage caches.
    #[command(subcommand)]
    Cache(CacheCmd),
    /// Manage the CI workflows trusted to push to a cache (trusted publishers).
    #[command(subcommand)]
    Publisher(PublisherCmd),
    /// Every upload record of a store path: who pushed it, with what key,
    /// certificate and claims; divergent claims too.
    Provenance {
        /// `[SERVER:]CACHE`
        cache: String,
        /// A store path, its base name or its hash.
        path: String,
        #[arg(long)]
        json: bool,
        /// Print an in-toto Statement v1 in a DSSE envelope signed by the cache key.
        #[arg(long)]
        in_toto: bool,
    },
    /// Search a cache's upload records (or divergences) by identity and time.
    Audit {
        cache: String,
        #[command(flatten)]
        filters: AuditFilters,
        /// List refused uploads that claimed another NAR for a cached path.
        #[arg(long)]
        divergences: bool,
    },
    /// Keys issued for a cache.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Revoke keys (by id, repository, workflow, run, subject, issue time,
    /// cache) or one upload record: every path left with no unrevoked upload
    /// answers 404 at once.
    Revoke {
        /// Only this cache (`[SERVER:]CACHE`); default: every cache you may revoke in.
        #[arg(long)]
        cache: Option<String>,
        /// The server (a `login` name) when --cache is not given.
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        key: Option<String>,
        /// OWNER/REPO or the numeric repository id.
        #[arg(long)]
        repository: Option<String>,
        /// Workflow file name or full workflow_ref.
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long)]
        run_id: Option<String>,
        #[arg(long)]
        subject: Option<String>,
        /// Keys issued at or after (RFC 3339 or Unix seconds).
        #[arg(long)]
        issued_after: Option<String>,
        #[arg(long)]
        issued_before: Option<String>,
        /// One upload record, by the id `provenix provenance` shows.
        #[arg(long)]
        upload: Option<i64>,
        #[arg(long)]
        reason: String,
        /// List what would be revoked and which paths would answer 404; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// List the paths of a local Nix store that a cache has revoked.
    CheckStore {
        cache: String,
        /// The local store to check (default: Nix's, or NIX_REMOTE).
        #[arg(long)]
        store: Option<String>,
    },
    /// Verify an exported attestation offline with the cache's public key.
    VerifyAttestation {
        file: std::path::PathBuf,
        /// The cache's public key, NAME:BASE64 (`provenix cache info` prints it).
        #[arg(long)]
        key: String,
    },
    /// Show who you are to a server. With a cache: exchange for a signing
    /// key (as `push` does) and show its identity and validity.
    Whoami {
        /// `[SERVER:]CACHE`, or `SERVER:` alone for the token's identity.
        cache: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum PublisherCmd {
    /// Trust a GitHub Actions workflow (`--github`) or any OIDC issuer's
    /// tokens (`--issuer NAME --claim NAME=GLOB ...`) to push to a cache.
    Add {
        cache: String,
        /// OWNER/REPO of the repository whose workflow pushes.
        #[arg(long, requires_all = ["repository_id", "owner_id", "workflow"])]
        github: Option<String>,
        /// The repository's numeric id (`gh api repos/OWNER/REPO --jq .id`).
        #[arg(long)]
        repository_id: Option<u64>,
        /// The owner's numeric id (`gh api repos/OWNER/REPO --jq .owner.id`).
        #[arg(long)]
        owner_id: Option<u64>,
        /// The workflow file under .github/workflows/, e.g. build.yml.
        #[arg(long)]
        workflow: Option<String>,
        /// Require this deployment environment.
        #[arg(long)]
        environment: Option<String>,
        /// Require the git ref to match this glob, e.g. 'refs/heads/main' or 'refs/tags/v*'.
        #[arg(long = "ref")]
        ref_glob: Option<String>,
        /// The reusable workflow the job runs in: OWNER/REPO/PATH@REF (REF may be a glob).
        #[arg(long)]
        reusable_workflow: Option<String>,
        /// Accept an event refused by default (pull_request_target). Repeatable.
        #[arg(long = "allow-event")]
        allow_events: Vec<String>,
        /// Accept self-hosted runners (default: GitHub-hosted only).
        #[arg(long)]
        allow_self_hosted: bool,
        /// The server's name for the issuer ([[oidc.issuers]] name).
        #[arg(long)]
        issuer: Option<String>,
        /// For a generic issuer: a claim that must match a glob, NAME=GLOB. Repeatable.
        #[arg(long = "claim", conflicts_with = "github")]
        claims: Vec<String>,
    },
    /// List a cache's trusted publishers.
    List {
        cache: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a publisher (by the id `list` shows).
    Remove { cache: String, id: i64 },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// List the short-term keys issued for a cache, newest first.
    List {
        cache: String,
        #[command(flatten)]
        filters: AuditFilters,
    },
}

#[derive(Args)]
struct AuditFilters {
    /// OWNER/REPO or the numeric repository id.
    #[arg(long)]
    repository: Option<String>,
    /// Workflow file name (build.yml) or a full workflow_ref.
    #[arg(long)]
    workflow: Option<String>,
    #[arg(long)]
    run_id: Option<String>,
    /// A key id.
    #[arg(long)]
    key: Option<String>,
    /// The identity's subject (a person's token `sub`, or the OIDC `sub`).
    #[arg(long)]
    subject: Option<String>,
    /// From this time (RFC 3339 or Unix seconds).
    #[arg(long)]
    since: Option<String>,
    /// Until this time (RFC 3339 or Unix seconds).
    #[arg(long)]
    until: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[arg(long)]
    limit: Option<i64>,
    /// Continue after a previous page (the `--cursor` it printed).
    #[arg(long)]
    cursor: Option<i64>,
    #[arg(long)]
    json: bool,
}

impl AuditFilters {
    fn query(&self) -> Result<provenix_provenance::audit::AuditQuery> {
        Ok(provenix_provenance::audit::AuditQuery {
            repository: self.repository.clone(),
            workflow: self.workflow.clone(),
            run_id: self.run_id.clone(),
            key: self.key.clone(),
            subject: self.subject.clone(),
            since: self.since.as_deref().map(audit::parse_time).transpose()?,
            until: self.until.as_deref().map(audit::parse_time).transpose()?,
            limit: self.limit,
            cursor: self.cursor,
        })
    }
}

#[derive(Subcommand)]
enum CacheCmd {
    /// Create a cache.
    Create {
        cache: String,
        #[command(flatten)]
        settings: CacheSettings,
        /// Import a signing key (`nix key generate-secret` / `nix-store
        /// --generate-binary-cache-key` output) instead of generating one.
        #[arg(long)]
        keypair_path: Option<std::path::PathBuf>,
    },
    /// Change a cache's settings or rotate its signing key.
    Configure {
        cache: String,
        #[command(flatten)]
        settings: CacheSettings,
        /// Follow the server's default retention again.
        #[arg(long, conflicts_with = "retention_period")]
        reset_retention_period: bool,
        /// Start signing with a new key; the old one keeps signing for --key-overlap.
        #[arg(long)]
        rotate_keypair: bool,
        /// How long the previous key keeps signing after --rotate-keypair.
        #[arg(long, default_value = "7 days", requires = "rotate_keypair")]
        key_overlap: String,
        /// Replace the key at once (Attic's behaviour: clients must re-trust).
        #[arg(long, conflicts_with = "rotate_keypair")]
        regenerate_keypair: bool,
        /// With --rotate-keypair or --regenerate-keypair: import this key.
        #[arg(long)]
        keypair_path: Option<std::path::PathBuf>,
    },
    /// Show a cache's settings and public key.
    Info {
        cache: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a cache and everything in it.
    Destroy {
        cache: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        no_confirm: bool,
    },
    /// Delete one store path from a cache.
    DeletePath { cache: String, path: String },
}

#[derive(Args)]
struct CacheSettings {
    /// Anyone may pull.
    #[arg(long, conflicts_with = "private")]
    public: bool,
    /// Only token holders with pull permission may pull.
    #[arg(long)]
    private: bool,
    #[arg(long)]
    priority: Option<i64>,
    #[arg(long)]
    store_dir: Option<String>,
    /// Paths signed by these keys are not pushed (repeatable).
    #[arg(long = "upstream-cache-key-name")]
    upstream_cache_key_names: Vec<String>,
    /// Delete paths not accessed for this long, e.g. "3 months".
    #[arg(long)]
    retention_period: Option<String>,
}

impl CacheSettings {
    fn to_json(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        let mut m = serde_json::Map::new();
        if self.public {
            m.insert("is_public".into(), json!(true));
        }
        if self.private {
            m.insert("is_public".into(), json!(false));
        }
        if let Some(p) = self.priority {
            m.insert("priority".into(), json!(p));
        }
        if let Some(d) = &self.store_dir {
            m.insert("store_dir".into(), json!(d));
        }
        if !self.upstream_cache_key_names.is_empty() {
            m.insert(
                "upstream_cache_key_names".into(),
                json!(self.upstream_cache_key_names),
            );
        }
        if let Some(r) = &self.retention_period {
            m.insert(
                "retention_period".into(),
                json!(parse_duration(r)?.as_secs()),
            );
        }
        Ok(m)
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration> {
    humantime::parse_duration(s.trim())
        .with_context(|| format!("invalid duration {s:?} (try \"7 days\", \"3 months\")"))
}

fn read_keypair(path: &std::path::Path) -> Result<String> {
    let s =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(s.trim().to_string())
}

fn print_info(info: &CacheInfo) {
    println!("Public: {}", info.is_public);
    println!("Public Key: {}", info.public_key);
    for k in info.signing_keys.iter().skip(1) {
        let until = k
            .retire_at
            .map(|t| format!(" (signs until Unix time {t})"))
            .unwrap_or_default();
        println!("Previous Key: {}{until}", k.public_key);
    }
    println!("Binary Cache Endpoint: {}", info.substituter_endpoint);
    println!("API Endpoint: {}", info.api_endpoint);
    println!("Store Directory: {}", info.store_dir);
    println!("Priority: {}", info.priority);
    println!("Upstream Cache Keys: {:?}", info.upstream_cache_key_names);
    match info.retention_period {
        Some(s) => println!("Retention Period: {s} seconds"),
        None => println!("Retention Period: Global Default"),
    }
}

fn client_for(reference: &str) -> Result<(ApiClient, ServerConfig, String)> {
    let cfg = ClientConfig::load()?;
    let (_, server, cache) = cfg.resolve(reference)?;
    // Fail on a typo before a network round trip.
    provenix_policy::validate_cache_name(&cache)?;
    Ok((ApiClient::new(&server)?, server, cache))
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        // One line: the cause chain joined, as scripts and people read it.
        eprintln!("provenix: error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Login {
            name,
            url,
            token,
            set_default,
        } => {
            let parsed =
                reqwest::Url::parse(&url).with_context(|| format!("invalid URL {url:?}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                bail!("server URL must be http:// or https://");
            }
            let mut cfg = ClientConfig::load()?;
            let first = cfg.servers.is_empty();
            cfg.servers.insert(
                name.clone(),
                ServerConfig {
                    endpoint: url,
                    token,
                },
            );
            if first || set_default || cfg.default_server.is_none() {
                cfg.default_server = Some(name.clone());
            }
            cfg.save()?;
            println!("✍️ Configured server \"{name}\"");
        }
        Cmd::Use { cache } => {
            let (api, server, cache) = client_for(&cache)?;
            let info = api.cache_info(&cache).await?;
            let conf = use_cache::configure_nix(&info, server.token.as_deref())?;
            println!(
                "Configuring Nix to use \"{cache}\" ({}), trusting {}",
                info.substituter_endpoint, info.public_key
            );
            println!("Wrote {}", conf.display());
        }
        Cmd::Push {
            cache,
            paths,
            jobs,
            no_closure,
            store,
        } => {
            let (api, server, cache) = client_for(&cache)?;
            let credential = exchange::Credential::for_server(&server)?;
            let store = nix::LocalStore { store };
            push::push(
                &api,
                credential,
                &store,
                &cache,
                &paths,
                push::PushOptions {
                    jobs,
                    closure: !no_closure,
                },
            )
            .await?;
        }
        Cmd::Cache(cmd) => cache_command(cmd).await?,
        Cmd::Publisher(cmd) => publisher_command(cmd).await?,
        Cmd::Whoami { cache, json } => whoami(cache, json).await?,
        Cmd::Provenance {
            cache,
            path,
            json,
            in_toto,
        } => {
            let (api, _, cache) = client_for(&cache)?;
            audit::provenance(&api, &cache, &path, json, in_toto).await?;
        }
        Cmd::Audit {
            cache,
            filters,
            divergences,
        } => {
            let (api, _, cache) = client_for(&cache)?;
            let q = filters.query()?;
            if divergences {
                audit::divergences(&api, &cache, &q, filters.json).await?;
            } else {
                audit::uploads(&api, &cache, &q, filters.json).await?;
            }
        }
        Cmd::Keys(KeysCmd::List { cache, filters }) => {
            let (api, _, cache) = client_for(&cache)?;
            audit::keys(&api, &cache, &filters.query()?, filters.json).await?;
        }
        Cmd::VerifyAttestation { file, key } => audit::verify_attestation(&file, &key)?,
        Cmd::Revoke {
            cache,
            server,
            key,
            repository,
            workflow,
            run_id,
            subject,
            issued_after,
            issued_before,
            upload,
            reason,
            dry_run,
            json,
        } => {
            let (api, cache) = match &cache {
                Some(c) => {
                    let (api, _, cache) = client_for(c)?;
                    (api, Some(cache))
                }
                None => {
                    let cfg = ClientConfig::load()?;
                    let name = server.or(cfg.default_server.clone()).context(
                        "no server: run `provenix login NAME URL TOKEN` or pass --server",
                    )?;
                    let s = cfg
                        .servers
                        .get(&name)
                        .with_context(|| format!("no server named {name:?}"))?;
                    (ApiClient::new(s)?, None)
                }
            };
            let req = provenix_provenance::revocation::RevokeRequest {
                cache,
                key,
                repository,
                workflow,
                run_id,
                subject,
                issued_after: issued_after.as_deref().map(audit::parse_time).transpose()?,
                issued_before: issued_before
                    .as_deref()
                    .map(audit::parse_time)
                    .transpose()?,
                upload,
                reason,
                dry_run,
            };
            revocation::revoke(&api, &req, json).await?;
        }
        Cmd::CheckStore { cache, store } => {
            let (api, _, cache) = client_for(&cache)?;
            revocation::check_store(&api, &cache, &nix::LocalStore { store }).await?;
        }
    }
    Ok(())
}

/// Unix seconds as RFC 3339 (UTC).
pub fn format_time(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

async fn whoami(reference: Option<String>, as_json: bool) -> Result<()> {
    let cfg = ClientConfig::load()?;
    let reference = reference.unwrap_or_default();
    if reference.is_empty() || reference.ends_with(':') {
        // The token's own identity, no key involved.
        let name = match reference.strip_suffix(':') {
            Some(n) => n.to_string(),
            None => cfg
                .default_server
                .clone()
                .context("no default server: run `provenix login NAME URL [TOKEN]` first")?,
        };
        let server = cfg
            .servers
            .get(&name)
            .with_context(|| format!("no server named {name:?}"))?;
        if server.token.is_none() {
            bail!("no token for {name:?}: inside CI, name a cache (`provenix whoami CACHE`) to exchange the job's OIDC token");
        }
        let me = ApiClient::new(server)?.whoami().await?;
        if as_json {
            println!("{}", serde_json::to_string_pretty(&me)?);
        } else {
            println!(
                "Subject: {}",
                me["subject"].as_str().unwrap_or("(anonymous)")
            );
            if let Some(exp) = me["expires_at"].as_i64() {
                println!("Token expires: {}", format_time(exp));
            }
            if let Some(caches) = me["caches"].as_object() {
                for (pattern, perms) in caches {
                    println!("Cache {pattern}: {perms}");
                }
            }
        }
        return Ok(());
    }
    let (api, server, cache) = client_for(&reference)?;
    let credential = exchange::Credential::for_server(&server)?;
    let session = exchange::exchange(&api, &credential, &cache).await?;
    let a = &session.answer;
    if as_json {
        let mut v = serde_json::to_value(a)?;
        // The session token is a credential: never print it.
        v.as_object_mut().map(|o| o.remove("access_token"));
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("Identity: {}", a.identity.subject);
    println!("Issuer: {}", a.identity.issuer);
    for claim in [
        "repository",
        "repository_id",
        "workflow_ref",
        "job_workflow_ref",
        "ref",
        "sha",
        "event_name",
        "environment",
        "run_id",
        "run_attempt",
        "runner_environment",
        "actor",
    ] {
        if let Some(v) = provenix_policy::publisher::claim_text(&a.identity.claims, claim) {
            println!("  {claim}: {v}");
        }
    }
    println!("Cache: {}", a.cache);
    println!("Key: {}", a.key_id);
    println!(
        "Valid: {} to {} ({} seconds)",
        format_time(a.not_before),
        format_time(a.not_after),
        a.not_after - a.not_before
    );
    Ok(())
}

async fn publisher_command(cmd: PublisherCmd) -> Result<()> {
    use provenix_policy::publisher::{GenericPublisher, GithubPublisher, DEFAULT_GITHUB_ISSUER};
    use provenix_policy::Publisher;
    match cmd {
        PublisherCmd::Add {
            cache,
            github,
            repository_id,
            owner_id,
            workflow,
            environment,
            ref_glob,
            reusable_workflow,
            allow_events,
            allow_self_hosted,
            issuer,
            claims,
        } => {
            let (api, _, cache) = client_for(&cache)?;
            let publisher = match github {
                Some(repository) => Publisher::Github(GithubPublisher {
                    issuer: issuer.unwrap_or_else(|| DEFAULT_GITHUB_ISSUER.into()),
                    repository,
                    repository_id: repository_id.context("--repository-id is required")?,
                    owner_id: owner_id.context("--owner-id is required")?,
                    workflow: workflow.context("--workflow is required")?,
                    environment,
                    ref_glob,
                    reusable_workflow,
                    allow_events,
                    allow_self_hosted,
                }),
                None => {
                    let issuer = issuer.context(
                        "give --github OWNER/REPO ..., or --issuer NAME --claim NAME=GLOB ...",
                    )?;
                    if environment.is_some()
                        || ref_glob.is_some()
                        || reusable_workflow.is_some()
                        || !allow_events.is_empty()
                        || allow_self_hosted
                    {
                        bail!("--environment, --ref, --reusable-workflow, --allow-event and --allow-self-hosted go with --github; for other issuers use --claim NAME=GLOB");
                    }
                    let claims = claims
                        .iter()
                        .map(|c| {
                            c.split_once('=')
                                .map(|(k, v)| (k.to_string(), v.to_string()))
                                .with_context(|| format!("--claim {c:?} is not NAME=GLOB"))
                        })
                        .collect::<Result<_>>()?;
                    Publisher::Generic(GenericPublisher { issuer, claims })
                }
            };
            // The server checks too; checking here saves a round trip.
            publisher.validate()?;
            let added = api.add_publisher(&cache, &publisher).await?;
            println!(
                "✅ Trusted publisher {} added to \"{cache}\": {}",
                added.id,
                added.publisher.describe()
            );
        }
        PublisherCmd::List { cache, json } => {
            let (api, _, cache) = client_for(&cache)?;
            let list = api.publishers(&cache).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("Cache \"{cache}\" has no trusted publishers.");
            } else {
                println!("{:>4}  {:<20}  {:<20}  PUBLISHER", "ID", "ADDED", "BY");
                for p in list {
                    println!(
                        "{:>4}  {:<20}  {:<20}  {}",
                        p.id,
                        format_time(p.created_at),
                        p.created_by,
                        p.publisher.describe()
                    );
                }
            }
        }
        PublisherCmd::Remove { cache, id } => {
            let (api, _, cache) = client_for(&cache)?;
            api.remove_publisher(&cache, id).await?;
            println!("🗑️ Removed trusted publisher {id} from \"{cache}\"");
        }
    }
    Ok(())
}

async fn cache_command(cmd: CacheCmd) -> Result<()> {
    match cmd {
        CacheCmd::Create {
            cache,
            settings,
            keypair_path,
        } => {
            let (api, _, cache) = client_for(&cache)?;
            let mut body = settings.to_json()?;
            if let Some(p) = keypair_path {
                body.insert("keypair".into(), json!(read_keypair(&p)?));
            }
            let info = api
                .create_cache(&cache, &serde_json::Value::Object(body))
                .await?;
            println!("✨ Created cache \"{cache}\"");
            print_info(&info);
        }
        CacheCmd::Configure {
            cache,
            settings,
            reset_retention_period,
            rotate_keypair,
            key_overlap,
            regenerate_keypair,
            keypair_path,
        } => {
            let (api, _, cache) = client_for(&cache)?;
            let mut body = settings.to_json()?;
            if reset_retention_period {
                body.insert("reset_retention_period".into(), json!(true));
            }
            if rotate_keypair || regenerate_keypair {
                let overlap = if rotate_keypair {
                    parse_duration(&key_overlap)?.as_secs()
                } else {
                    0
                };
                let mut rotate = json!({ "overlap": overlap });
                if let Some(p) = keypair_path {
                    rotate["keypair"] = json!(read_keypair(&p)?);
                }
                body.insert("rotate_keypair".into(), rotate);
            } else if keypair_path.is_some() {
                bail!("--keypair-path goes with --rotate-keypair or --regenerate-keypair");
            }
            if body.is_empty() {
                bail!("nothing to change: give at least one setting");
            }
            let info = api
                .configure_cache(&cache, &serde_json::Value::Object(body))
                .await?;
            println!("✅ Configured \"{cache}\"");
            print_info(&info);
        }
        CacheCmd::Info { cache, json } => {
            let (api, _, cache) = client_for(&cache)?;
            let info = api.cache_info(&cache).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print_info(&info);
            }
        }
        CacheCmd::Destroy { cache, no_confirm } => {
            let (api, _, cache) = client_for(&cache)?;
            if !no_confirm {
                use std::io::{BufRead, IsTerminal, Write};
                if !std::io::stdin().is_terminal() {
                    bail!("refusing to destroy {cache:?} without confirmation: pass --no-confirm");
                }
                print!(
                    "Destroy cache \"{cache}\" and every path in it? Type its name to confirm: "
                );
                std::io::stdout().flush()?;
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                if line.trim() != cache {
                    bail!("not confirmed; nothing was destroyed");
                }
            }
            api.destroy_cache(&cache).await?;
            println!("🗑️ Destroyed cache \"{cache}\"");
        }
        CacheCmd::DeletePath { cache, path } => {
            let (api, _, cache) = client_for(&cache)?;
            let base = path.rsplit('/').next().unwrap_or(&path);
            let hash = base.get(..32).context("not a store path")?;
            api.delete_path(&cache, hash).await?;
            println!("Deleted {path} from \"{cache}\"");
        }
    }
    Ok(())
}
