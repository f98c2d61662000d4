use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use provenix_policy::cache_name::validate_pattern;
use provenix_policy::{CachePermissions, Permission};
use provenix_server::config::{self, Config};
use provenix_server::identity::token::TokenAuthority;
use provenix_server::state::AppState;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "provenixd", version, about = "provenix binary cache server")]
struct Cli {
    /// Configuration file (Attic-style server.toml). Without it, the embedded
    /// defaults are written to ~/.config/provenix/server.toml on first run.
    #[arg(short = 'f', long = "config", global = true)]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "monolithic")]
    mode: Mode,
    /// Overrides `listen` from the config (e.g. 127.0.0.1:0 for any free port).
    #[arg(long)]
    listen: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Mode {
    /// API server, garbage collector and migrations in one process.
    Monolithic,
    /// API server only (run `db-migrations` first).
    ApiServer,
    GarbageCollector,
    GarbageCollectorOnce,
    DbMigrations,
    CheckConfig,
    /// Read every stored chunk back and report missing or corrupt ones (JSON);
    /// exits 1 if anything is damaged.
    Verify,
    /// A tlog-witness for other servers' caches' logs (-f WITNESS.TOML;
    /// docs/transparency-log.md).
    Witness,
}

#[derive(Subcommand)]
enum Command {
    /// Mint a token, like `atticadm make-token`. Prints the token alone on its last line.
    MakeToken(MakeToken),
}

#[derive(Parser)]
struct MakeToken {
    /// Subject of the token (who it is for).
    #[arg(long)]
    sub: String,
    /// How long the token is valid, e.g. "3 months", "1y", "30d".
    #[arg(long)]
    validity: String,
    /// Cache patterns (`main`, `alice-*`, `*`) this token may pull from.
    #[arg(long, value_name = "PATTERN")]
    pull: Vec<String>,
    #[arg(long, value_name = "PATTERN")]
    push: Vec<String>,
    #[arg(long, value_name = "PATTERN")]
    delete: Vec<String>,
    #[arg(long = "create-cache", value_name = "PATTERN")]
    create_cache: Vec<String>,
    #[arg(long = "configure-cache", value_name = "PATTERN")]
    configure_cache: Vec<String>,
    #[arg(long = "configure-cache-retention", value_name = "PATTERN")]
    configure_cache_retention: Vec<String>,
    #[arg(long = "destroy-cache", value_name = "PATTERN")]
    destroy_cache: Vec<String>,
    /// Revoke keys and uploads on matching caches.
    #[arg(long, value_name = "PATTERN")]
    revoke: Vec<String>,
    /// Read provenance and audit records of matching caches.
    #[arg(long, value_name = "PATTERN")]
    audit: Vec<String>,
    /// Print the claims as JSON instead of a token.
    #[arg(long)]
    dump_claims: bool,
}

/// Sets one permission bit.
type Grant = fn(&mut Permission);

impl MakeToken {
    fn permissions(&self) -> Result<CachePermissions> {
        let mut caps = CachePermissions::default();
        let grants: [(&Vec<String>, Grant); 9] = [
            (&self.pull, |p| p.pull = true),
            (&self.push, |p| p.push = true),
            (&self.delete, |p| p.delete = true),
            (&self.create_cache, |p| p.create_cache = true),
            (&self.configure_cache, |p| p.configure_cache = true),
            (&self.configure_cache_retention, |p| {
                p.configure_cache_retention = true
            }),
            (&self.destroy_cache, |p| p.destroy_cache = true),
            (&self.revoke, |p| p.revoke = true),
            (&self.audit, |p| p.audit = true),
        ];
        for (patterns, grant) in grants {
            for pattern in patterns {
                validate_pattern(pattern).map_err(|e| anyhow::anyhow!("{e}"))?;
                caps.grant(pattern, grant);
            }
        }
        Ok(caps)
    }
}

fn root_permissions() -> CachePermissions {
    let mut caps = CachePermissions::default();
    caps.grant("*", |p| *p = Permission::all());
    caps
}

/// Loads the config, or writes the embedded defaults on first run. Returns
/// whether they were just written.
fn load_config(path: Option<PathBuf>) -> Result<(Config, bool)> {
    if let Some(path) = path {
        return Ok((Config::load(&path)?, false));
    }
    let (config_path, data_dir) = config::default_paths()?;
    if config_path.exists() {
        return Ok((Config::load(&config_path)?, false));
    }
    std::fs::create_dir_all(config_path.parent().expect("has parent"))?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    {
        // create_dir_all leaves an existing directory's mode as it was.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", data_dir.display()))?;
    }
    let text = config::default_config_text(&data_dir);
    write_private(&config_path, &text)?;
    tracing::info!(
        "wrote the default configuration to {}",
        config_path.display()
    );
    Ok((Config::parse(&text)?, true))
}

/// Warns, once at start, when the data the server keeps lies in a directory
/// others can read: made before the server set its own file modes, or by
/// hand. Only new files are protected by the umask; existing ones keep
/// their modes until the operator fixes them (`chmod -R go= DIR`).
fn warn_if_others_can_read(config: &Config) {
    use std::os::unix::fs::PermissionsExt;
    let mut dirs = Vec::new();
    if let config::StorageConfig::Local { path } = &config.storage {
        dirs.push(path.clone());
    }
    let url = &config.database.url;
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let file = PathBuf::from(rest.split('?').next().unwrap_or_default());
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            dirs.push(dir.to_path_buf());
        }
        dirs.push(file);
    }
    for path in dirs {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "others can read this server's data (signing keys, private NARs); run `chmod -R go= {}`",
                path.display()
            );
        }
    }
}

/// Writes a file only its owner can read: it holds the token secret.
fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Logs go to stderr: plain text, coloured only on a terminal (a log file
/// or the journal gets no escape codes), or one JSON object per line with
/// `PROVENIX_LOG_FORMAT=json` for log shippers. `PROVENIX_LOG` filters.
fn init_logging() -> Result<()> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("PROVENIX_LOG")
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("PROVENIX_LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().init(),
        Ok("text") | Err(_) => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        Ok(other) => bail!("PROVENIX_LOG_FORMAT must be text or json, not {other:?}"),
    }
    Ok(())
}

fn main() {
    // Everything the server writes is its own alone, whatever the umask it
    // was started with: the database holds every cache's signing key and
    // the CA's private key (also in its -wal and -shm files), and the packs
    // hold private caches' NARs.
    // SAFETY: umask only sets this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    tune_malloc();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        runtime.worker_threads(async_workers(available_cores()));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("provenixd: error: {e:#}");
        std::process::exit(1);
    }
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Threads for the async side (HTTP, streaming, the in-place SQLite
/// lookups): half the cores, at least one; `TOKIO_WORKER_THREADS` overrides.
/// The CPU-heavy work (compression, hashing, pack and chunk-list reads) runs
/// on the blocking pool, which this does not limit. On two cores, one worker
/// per core had the two contending for SQLite's locks and waking each other:
/// one worker answered narinfo 40% faster (52,000 -> 73,000 req/s at 8
/// clients), with push and pull unchanged.
fn async_workers(cores: usize) -> usize {
    (cores / 2).max(1)
}

/// glibc malloc, tuned before any thread starts, for a server whose large
/// buffers (chunks up to 256 KiB, pull reads of 1 MiB, pack parts) come and
/// go thousands of times per NAR:
/// - arenas capped at the core count (at least two): by default each thread
///   that allocates gets its own (up to 8 per core) and keeps freed megabyte
///   buffers in it; buffers allocated on many blocking-pool threads made
///   peak RSS grow with NAR size (a 1 GiB pull: 64 MiB, 37 MiB capped);
/// - buffers up to 2 MiB come from the arenas and are reused, and only more
///   than 4 MiB free at the top of an arena is returned. glibc otherwise
///   moves its mmap threshold up to the largest buffer freed so far, so
///   whether a pull's 1 MiB reads were fresh mmaps (a page fault per 4 KiB
///   and an munmap each: pull 17% slower) depended on what the server had
///   done before. Fixed thresholds make it the same every time.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = available_cores();
        // SAFETY: mallopt only sets allocator parameters; no thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cores.clamp(2, 8) as libc::c_int);
            libc::mallopt(libc::M_MMAP_THRESHOLD, 2 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
        }
    }
}

async fn run() -> Result<()> {
    init_logging()?;
    let cli = Cli::parse();
    if cli.mode == Mode::Witness {
        return provenix_server::witness::run(cli.config, cli.listen).await;
    }
    let (mut config, first_run) = load_config(cli.config)?;
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }

    if let Some(Command::MakeToken(args)) = cli.command {
        let caps = args.permissions()?;
        let validity = config::parse_duration(&args.validity)?;
        if validity.is_zero() {
            bail!("--validity must be longer than zero");
        }
        let tokens = TokenAuthority::from_config(&config)?;
        let token = tokens.mint(&args.sub, validity, caps.clone())?;
        if args.dump_claims {
            let claims = tokens.verify(&token)?;
            println!("{}", serde_json::to_string_pretty(&claims)?);
        } else {
            println!("{token}");
        }
        return Ok(());
    }

    match cli.mode {
        Mode::CheckConfig => {
            TokenAuthority::from_config(&config)?;
            provenix_server::storage::Storage::check_config(&config.storage)?;
            println!("configuration is valid");
            return Ok(());
        }
        Mode::DbMigrations => {
            let state = AppState::new(config, None).await?;
            state.db.migrate().await?;
            println!("database migrations applied");
            return Ok(());
        }
        _ => {}
    }

    // Bind before building the state, so that the advertised endpoint is the
    // real address (listen = "127.0.0.1:0" picks a free port).
    let listener = match cli.mode {
        Mode::Monolithic | Mode::ApiServer => Some(
            tokio::net::TcpListener::bind(&config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?,
        ),
        _ => None,
    };
    let bound = listener.as_ref().map(|l| l.local_addr()).transpose()?;
    warn_if_others_can_read(&config);
    let state = AppState::new(config, bound).await?;
    if cli.mode == Mode::Monolithic {
        state.db.migrate().await?;
    }
    match cli.mode {
        Mode::GarbageCollectorOnce => {
            let report = provenix_server::maintenance::gc::run_once(&state).await?;
            println!("{}", serde_json::to_string(&report)?);
            return Ok(());
        }
        Mode::GarbageCollector => {
            provenix_server::maintenance::gc::run_forever(&state).await;
            return Ok(());
        }
        Mode::Verify => {
            let report = provenix_server::maintenance::verify::run(&state).await?;
            println!("{}", serde_json::to_string(&report)?);
            if !report.is_clean() {
                let logs = report
                    .logs
                    .iter()
                    .filter(|l| !l.problems.is_empty())
                    .count();
                anyhow::bail!(
                    "{} damaged chunks in {} missing and {} corrupt objects; {} paths affected; {logs} damaged transparency logs",
                    report.damaged_chunks,
                    report.missing.len(),
                    report.corrupt.len(),
                    report.damaged_paths.len()
                );
            }
            return Ok(());
        }
        Mode::Monolithic => {
            let gc_state = state.clone();
            tokio::spawn(
                async move { provenix_server::maintenance::gc::run_forever(&gc_state).await },
            );
        }
        _ => {}
    }
    // Every serving replica integrates the logs; they take turns per log.
    let log_state = state.clone();
    tokio::spawn(
        async move { provenix_server::maintenance::integrate::run_forever(&log_state).await },
    );
    if !state.config.log.witnesses.is_empty() {
        let publish_state = state.clone();
        tokio::spawn(async move {
            provenix_server::maintenance::publish::run_forever(&publish_state).await
        });
    }
    // The signing CA is created (first run) or read now rather than by the
    // first key exchange, which otherwise waits ~25 ms for it. A failure
    // here (a database not migrated yet) is retried by that exchange.
    let ca_state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = ca_state.ca().await {
            tracing::warn!("signing CA not ready yet: {e:#}");
        }
    });

    for issuer in state.oidc.issuers.iter().filter(|i| i.audience.is_none()) {
        let line = provenix_server::identity::oidc::audience_unset(issuer).message;
        tracing::error!("{line}");
    }

    let listener = listener.expect("bound for serving modes");
    let addr = listener.local_addr()?;
    if first_run {
        let token = state.tokens.mint(
            "root",
            std::time::Duration::from_secs(365 * 86400),
            root_permissions(),
        )?;
        println!("Your root token (all permissions on every cache, valid for one year):\n\n    {token}\n");
        println!(
            "Log in with the provenix client:\n\n    provenix login local http://{addr} {token}\n"
        );
    }
    println!("provenixd listening on http://{addr}");
    tracing::info!("listening on http://{addr}");
    let http = state.config.http.clone();
    let traffic = provenix_server::http::Traffic {
        received: state.metrics.received_bytes.clone(),
        sent: state.metrics.sent_bytes.clone(),
    };
    let app = provenix_server::router(state);
    provenix_server::http::serve(listener, app, &http, traffic, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
