//! `provenix cache create|configure|info|destroy|delete-path`: a cache's
//! settings and signing keys, and deleting a cache or one of its paths.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use super::client_for;
use crate::api::CacheInfo;

/// Manage caches.
#[derive(Subcommand)]
pub enum CacheCommand {
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
        /// Drop the cache's own size limit (the server's still applies).
        #[arg(long, conflicts_with = "max_stored_size")]
        reset_max_stored_size: bool,
        /// Start signing with a new key; the old one keeps signing for --key-overlap.
        #[arg(long)]
        rotate_keypair: bool,
        /// Start signing the transparency log's checkpoints with a new log
        /// key; the old one keeps signing beside it for --key-overlap.
        #[arg(long)]
        rotate_log_key: bool,
        /// How long the previous key keeps signing after --rotate-keypair
        /// or --rotate-log-key.
        #[arg(long, default_value = "7 days")]
        key_overlap: String,
        /// Replace the key at once (Attic's behaviour: clients must re-trust).
        #[arg(long, conflicts_with = "rotate_keypair")]
        regenerate_keypair: bool,
        /// With --rotate-keypair or --regenerate-keypair: import this key.
        #[arg(long)]
        keypair_path: Option<std::path::PathBuf>,
    },
    /// The caches you can see on a server, public or private, with what
    /// you may do on each.
    List {
        /// The server (default: the default server).
        server: Option<String>,
        #[arg(long)]
        json: bool,
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
pub struct CacheSettings {
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
    /// The most compressed NAR data the cache may hold, e.g. "50GiB"; GC
    /// evicts its least recently used paths no pin holds past it.
    #[arg(long)]
    max_stored_size: Option<String>,
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
        if let Some(size) = &self.max_stored_size {
            let bytes = provenix_policy::retention::parse_byte_size(size)
                .map_err(|e| anyhow::anyhow!("--max-stored-size: {e}"))?;
            m.insert("max_stored_size".into(), json!(bytes));
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
    match info.max_stored_size {
        Some(b) => println!("Max Stored Size: {b} bytes"),
        None => println!("Max Stored Size: Global Default"),
    }
    if let Some(log) = &info.transparency_log {
        println!("Transparency Log: {}", log.url);
        for k in &log.verifier_keys {
            let until = k
                .retire_at
                .map(|t| format!(" (signs until Unix time {t})"))
                .unwrap_or_default();
            println!("Log Key: {}{until}", k.verifier_key);
        }
    }
}

pub async fn run(command: CacheCommand) -> Result<()> {
    match command {
        CacheCommand::Create {
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
        CacheCommand::Configure {
            cache,
            settings,
            reset_retention_period,
            reset_max_stored_size,
            rotate_keypair,
            rotate_log_key,
            key_overlap,
            regenerate_keypair,
            keypair_path,
        } => {
            let (api, _, cache) = client_for(&cache)?;
            let mut body = settings.to_json()?;
            if reset_retention_period {
                body.insert("reset_retention_period".into(), json!(true));
            }
            if reset_max_stored_size {
                body.insert("reset_max_stored_size".into(), json!(true));
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
            if rotate_log_key {
                let overlap = parse_duration(&key_overlap)?.as_secs();
                body.insert("rotate_log_key".into(), json!({ "overlap": overlap }));
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
        CacheCommand::List { server, json } => {
            let cfg = crate::config::ClientConfig::load()?;
            let name = match server {
                Some(s) => s,
                None => cfg.default_name()?,
            };
            let api = crate::api::ApiClient::new(&cfg.server(&name)?)?;
            let caches = api.list_caches().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&caches)?);
            } else if caches.is_empty() {
                eprintln!("No caches on {name} that this token can see.");
            } else {
                let width = caches.iter().map(|c| c.name.len()).max().unwrap_or(0);
                for c in &caches {
                    let visibility = if c.is_public { "public " } else { "private" };
                    println!("{:width$}  {visibility}  {}", c.name, c.rights.join(", "));
                }
            }
        }
        CacheCommand::Info { cache, json } => {
            let (api, _, cache) = client_for(&cache)?;
            let info = api.cache_info(&cache).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print_info(&info);
            }
        }
        CacheCommand::Destroy { cache, no_confirm } => {
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
        CacheCommand::DeletePath { cache, path } => {
            let (api, _, cache) = client_for(&cache)?;
            let base = path.rsplit('/').next().unwrap_or(&path);
            let hash = base.get(..32).context("not a store path")?;
            api.delete_path(&cache, hash).await?;
            println!("Deleted {path} from \"{cache}\"");
        }
    }
    Ok(())
}
