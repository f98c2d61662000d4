//! narinfo latency *while* something else runs: a few clients fetch random
//! narinfo in a paced loop (a substituter's load, not a saturating one),
//! each answer's start time and latency kept, so the figures cover exactly
//! the window of the operation measured. wrk cannot: it reports only the
//! whole run.

use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Clients fetching at once.
const CLIENTS: usize = 4;
/// Pause between one client's requests: at most ~2,000 requests/s in all.
const PAUSE: Duration = Duration::from_millis(2);

pub struct Probe {
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Vec<(Instant, Duration)>>,
}

/// Latency figures over one window.
pub struct Window {
    pub requests: usize,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Probe {
    /// Starts fetching `{base}/{hash}.narinfo` for random hashes of `sample`.
    pub fn start(base: &str, sample: Vec<String>) -> Result<Probe> {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("probe runtime")?;
        let (base, sample) = (base.trim_end_matches('/').to_string(), Arc::new(sample));
        let (stop2, errors2) = (stop.clone(), errors.clone());
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let http = reqwest::Client::new();
                let tasks: Vec<_> = (0..CLIENTS)
                    .map(|n| {
                        let (http, base, sample) = (http.clone(), base.clone(), sample.clone());
                        let (stop, errors) = (stop2.clone(), errors2.clone());
                        tokio::spawn(async move {
                            let mut seen = Vec::new();
                            let mut i = n * 7919;
                            while !stop.load(Ordering::Relaxed) {
                                i = (i * 31 + 17) % sample.len().max(1);
                                let url = format!("{base}/{}.narinfo", sample[i]);
                                let t = Instant::now();
                                // A path a revocation removed is a 404: an
                                // answer, and the right one.
                                let ok = match http.get(&url).send().await {
                                    Ok(r) => {
                                        let status = r.status().as_u16();
                                        (status == 200 || status == 404) && r.bytes().await.is_ok()
                                    }
                                    Err(_) => false,
                                };
                                if ok {
                                    seen.push((t, t.elapsed()));
                                } else {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                }
                                tokio::time::sleep(PAUSE).await;
                            }
                            seen
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for t in tasks {
                    all.extend(t.await.unwrap_or_default());
                }
                all
            })
        });
        Ok(Probe {
            stop,
            errors,
            thread,
        })
    }

    /// Stops and summarizes the requests that started within `from..to`.
    pub fn stop(self, from: Instant, to: Instant) -> Result<Window> {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the probe panicked"))?;
        let mut ms: Vec<f64> = seen
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, d)| d.as_secs_f64() * 1e3)
            .collect();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            ms.get(((ms.len() as f64 * q) as usize).min(ms.len().saturating_sub(1)))
                .copied()
                .unwrap_or(f64::NAN)
        };
        Ok(Window {
            requests: ms.len(),
            errors: self.errors.load(Ordering::Relaxed),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: ms.last().copied().unwrap_or(f64::NAN),
        })
    }
}

/// Runs `op` with the probe fetching from `base` before, during and after
/// it; returns its result, its seconds and the narinfo latency during it.
pub fn during<T>(
    base: &str,
    sample: &[String],
    op: impl FnOnce() -> Result<T>,
) -> Result<(T, f64, Window)> {
    let probe = Probe::start(base, sample.to_vec())?;
    std::thread::sleep(Duration::from_millis(300));
    let from = Instant::now();
    let out = op();
    let to = Instant::now();
    std::thread::sleep(Duration::from_millis(100));
    let window = probe.stop(from, to)?;
    Ok((out?, (to - from).as_secs_f64(), window))
}
