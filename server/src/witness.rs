//! `provenixd --mode witness`: a tlog-witness (c2sp.org/tlog-witness) for
//! the logs it is configured to follow, so an organisation can witness a
//! cache it does not operate. It keeps the latest checkpoint it cosigned
//! per log (a file each, replaced atomically) and cosigns a new one only
//! if it verifies with the log's key and is consistent with that one
//! (`provenance::tlog::witness::check_add`). Checking and persisting are
//! one step under a lock, as the protocol requires.
//!
//! ```toml
//! listen = "127.0.0.1:7380"
//! name = "witness.example.org/w1"
//! key-file = "/var/lib/provenix-witness/key"    # made on first start
//! state-dir = "/var/lib/provenix-witness/state"
//! [[logs]]
//! origin = "cache.example.org/main/tlog"
//! verifier-key = "cache.example.org/main/tlog+1a2b3c4d+AQ..."
//! ```

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use provenix_provenance::tlog::witness::{check_add, AddCheckpoint, Cosigner, Witnessed};
use provenix_provenance::tlog::Hash;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WitnessConfig {
    pub listen: String,
    /// The witness's name (a schema-less URL), its cosignatures' key name.
    pub name: String,
    /// The ed25519 seed, hex; made on first start if missing.
    pub key_file: PathBuf,
    pub state_dir: PathBuf,
    #[serde(default)]
    pub logs: Vec<WitnessedLog>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WitnessedLog {
    pub origin: String,
    pub verifier_key: String,
}

struct Witness {
    cosigner: Cosigner,
    logs: HashMap<String, String>,
    state_dir: PathBuf,
    /// Held from reading a log's state to persisting the new one.
    lock: tokio::sync::Mutex<()>,
}

/// The body limit: an old size, 63 hashes and a checkpoint with its
/// signatures fit many times over.
const MAX_BODY: usize = 64 << 10;

fn load_key(path: &Path) -> Result<ed25519_dalek::SigningKey> {
    let seed: [u8; 32] = match std::fs::read_to_string(path) {
        Ok(text) => hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("{} is not a 32-byte hex seed", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed: [u8; 32] = rand::random();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(path, hex::encode(seed))
                .with_context(|| format!("cannot write {}", path.display()))?;
            seed
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// Named by the origin's SHA-256: any origin fits a file name.
fn state_file(dir: &Path, origin: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    dir.join(hex::encode(Sha256::digest(origin.as_bytes())))
}

fn read_state(dir: &Path, origin: &str) -> Result<Option<Witnessed>> {
    let path = state_file(dir, origin);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let (size, root) = text
        .trim()
        .split_once(' ')
        .with_context(|| format!("{} is damaged", path.display()))?;
    let root: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(root)
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{} is damaged", path.display()))?;
    Ok(Some(Witnessed {
        size: size.parse().context("a damaged size")?,
        root: Hash(root),
    }))
}

fn write_state(dir: &Path, origin: &str, w: &Witnessed) -> Result<()> {
    use std::io::Write;
    let path = state_file(dir, origin);
    let tmp = path.with_extension("new");
    let mut f = std::fs::File::create(&tmp)?;
    let root = base64::engine::general_purpose::STANDARD.encode(w.root.0);
    f.write_all(format!("{} {root}\n", w.size).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    let req = match AddCheckpoint::parse(&body) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    // The origin is the checkpoint's first line.
    let origin = String::from_utf8_lossy(&req.checkpoint)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let Some(vkey) = w.logs.get(&origin) else {
        return text(StatusCode::NOT_FOUND, format!("unknown log {origin:?}\n"));
    };
    let _turn = w.lock.lock().await;
    let last = match read_state(&w.state_dir, &origin) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("witness state: {e:#}");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "state unreadable\n".into(),
            );
        }
    };
    match check_add(&req, &origin, vkey, last) {
        Ok((next, note_text)) => {
            // The same checkpoint again changes nothing: no write (a
            // stranger replaying it cannot make the witness sync disks).
            let unchanged = last.is_some_and(|l| l.size == next.size && l.root == next.root);
            let written = if unchanged {
                Ok(())
            } else {
                let (dir, origin) = (w.state_dir.clone(), origin.clone());
                tokio::task::spawn_blocking(move || write_state(&dir, &origin, &next))
                    .await
                    .unwrap_or_else(|e| Err(anyhow::anyhow!("{e}")))
            };
            if let Err(e) = written {
                tracing::error!("witness state: {e:#}");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot persist\n".into());
            }
            let time = crate::clock::now().max(0) as u64;
            tracing::info!(origin = %origin, size = next.size, "cosigned");
            text(StatusCode::OK, w.cosigner.cosign(&note_text, time))
        }
        Err(provenix_provenance::tlog::witness::WitnessError::Conflict(size)) => (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{size}\n"),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(origin = %origin, "refused: {e}");
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            text(status, format!("{e}\n"))
        }
    }
}

/// Runs the witness until the process is stopped.
pub async fn run(config: Option<PathBuf>, listen: Option<String>) -> Result<()> {
    let path = config.context("--mode witness needs -f WITNESS.TOML")?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut config: WitnessConfig = toml::from_str(&text)
        .with_context(|| format!("{} is not a witness config", path.display()))?;
    if let Some(l) = listen {
        config.listen = l;
    }
    let cosigner = Cosigner::new(&config.name, load_key(&config.key_file)?)?;
    std::fs::create_dir_all(&config.state_dir)?;
    let mut logs = HashMap::new();
    for l in config.logs {
        // Refuse a key that would never verify, at start, not per request.
        provenix_provenance::tlog::checkpoint::verify(b"", &l.verifier_key, &l.origin)
            .err()
            .filter(|e| {
                matches!(
                    e,
                    provenix_provenance::tlog::checkpoint::CheckpointError::BadVerifierKey(_)
                )
            })
            .map_or(Ok(()), |e| Err(anyhow::anyhow!("log {}: {e}", l.origin)))?;
        logs.insert(l.origin, l.verifier_key);
    }
    let witness = Arc::new(Witness {
        cosigner,
        logs,
        state_dir: config.state_dir,
        lock: tokio::sync::Mutex::new(()),
    });
    // The server's own connection limits and timeouts (headers, idle
    // connections, a minimum body rate): a stranger cannot hold
    // connections open by never finishing a request.
    let http = crate::config::HttpConfig::default();
    let (min_rate, grace) = (http.min_body_rate, http.body_rate_grace);
    let app = Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_request(
            move |req: axum::extract::Request| async move {
                crate::http::body_rate::limit(req, min_rate, grace)
            },
        ))
        .with_state(witness.clone());
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "witness {} verifier key: {}",
        witness.cosigner.name(),
        witness.cosigner.verifier_key()
    );
    println!("provenixd listening on http://{addr}");
    let traffic = crate::http::Traffic {
        received: Default::default(),
        sent: Default::default(),
    };
    crate::http::serve(listener, app, &http, traffic, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
