//! `provenix queue add|run`: the crash-safe push queue a Nix
//! `post-build-hook` feeds (`crate::queue` owns the files).

use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

use super::{client_for, stop_signal};
use crate::exchange::Credential;
use crate::nix::LocalStore;
use crate::push::PushOptions;
use crate::queue::{default_dir, Queue};

#[derive(Args, Clone)]
pub struct QueueDir {
    /// The queue directory (default: PROVENIX_QUEUE_DIR, else
    /// $XDG_STATE_HOME/provenix/queue).
    #[arg(long = "queue", value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl QueueDir {
    fn open(&self) -> Result<Queue> {
        Queue::open(match &self.dir {
            Some(d) => d.clone(),
            None => default_dir()?,
        })
    }
}

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Queue store paths to push later, durably and at once (for Nix's
    /// `post-build-hook`: `provenix queue add $OUT_PATHS`).
    Add {
        #[arg(required = true)]
        paths: Vec<String>,
        #[command(flatten)]
        queue: QueueDir,
    },
    /// Push what the queue holds (with closures) and remove it once the
    /// server has it; keeps watching the queue unless --once.
    Run {
        /// `[SERVER:]CACHE`
        cache: String,
        #[command(flatten)]
        queue: QueueDir,
        /// Drain what is queued now, then exit.
        #[arg(long)]
        once: bool,
        /// Paths per push, about.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Uploads in parallel.
        #[arg(short = 'j', long, default_value_t = 5)]
        jobs: usize,
        /// The local store to read from (default: Nix's, or NIX_REMOTE).
        #[arg(long)]
        store: Option<String>,
    },
}

pub async fn run(command: QueueCommand) -> Result<()> {
    match command {
        QueueCommand::Add { paths, queue } => {
            queue.open()?.add(&paths)?;
            Ok(())
        }
        QueueCommand::Run {
            cache,
            queue,
            once,
            batch,
            jobs,
            store,
        } => drain(&cache, queue.open()?, once, batch.max(1), jobs, store).await,
    }
}

async fn drain(
    reference: &str,
    queue: Queue,
    once: bool,
    batch: usize,
    jobs: usize,
    store: Option<String>,
) -> Result<()> {
    let _lock = queue.lock_for_run()?;
    let store = LocalStore { store };
    let stop = stop_signal();
    tokio::pin!(stop);
    // Installs the handlers now, so a signal during the first push waits
    // for it to finish instead of killing it.
    let _ = futures::FutureExt::now_or_never(&mut stop);
    let mut backoff = Duration::from_secs(1);
    loop {
        let entries = queue.pending(batch)?;
        if entries.is_empty() {
            if once {
                return Ok(());
            }
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
            }
        }
        let queued: Vec<String> = entries.iter().flat_map(|e| e.paths.clone()).collect();
        // A path collected since it was queued cannot be pushed; the
        // others still are.
        let valid = store.valid(&queued).await?;
        if valid.len() < queued.len() {
            eprintln!(
                "Skipping {} queued paths no longer in the store.",
                queued.len() - valid.len()
            );
        }
        let pushed = if valid.is_empty() {
            Ok(())
        } else {
            // Credentials are looked up per batch: a token-command runs
            // again, and a CI key is exchanged afresh.
            let (api, server, cache) = client_for(reference)?;
            let credential = Credential::for_server(&server)?;
            let options = PushOptions {
                jobs,
                closure: true,
                ignore_upstream: false,
                summary: None,
            };
            // The push in flight finishes even when a stop is asked for.
            crate::push::push(&api, credential, &store, &cache, &valid, options)
                .await
                .map(|_| ())
        };
        match pushed {
            Ok(()) => {
                queue.done(&entries)?;
                backoff = Duration::from_secs(1);
            }
            Err(e) if once => return Err(e),
            Err(e) => {
                eprintln!("provenix: push failed, retrying in {backoff:?}: {e:#}");
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
        if futures::FutureExt::now_or_never(&mut stop).is_some() {
            return Ok(());
        }
    }
}
