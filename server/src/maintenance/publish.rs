//! Publication: each new checkpoint is sent to the configured witnesses
//! (tlog-witness `add-checkpoint`, with a consistency proof from the size
//! each last cosigned) and published with their cosignatures once
//! `[log] witness-quorum` of them cosigned. Until then the previous
//! checkpoint stays the one served, and how far behind publication is
//! shows in `provenix_log_unpublished_entries` and a log line. A witness
//! that is down, slow or answers garbage delays only publication: entries
//! keep being sequenced and integrated.

use anyhow::{bail, Context, Result};
use provenix_provenance::tlog::tree;
use provenix_provenance::tlog::witness::{count_cosignatures, AddCheckpoint};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::config::WitnessConfig;
use crate::state::AppState;

/// How long one witness may take to answer.
const WITNESS_TIMEOUT: Duration = Duration::from_secs(5);

/// The size each witness last cosigned, per log: where the next proof
/// starts. Learnt from 409 answers after a restart.
#[derive(Default)]
pub struct WitnessSizes(Mutex<HashMap<(String, i64), u64>>);

impl WitnessSizes {
    fn get(&self, witness: &str, cache_id: i64) -> u64 {
        let map = self.0.lock().expect("not poisoned");
        map.get(&(witness.to_string(), cache_id))
            .copied()
            .unwrap_or(0)
    }

    fn set(&self, witness: &str, cache_id: i64, size: u64) {
        let mut map = self.0.lock().expect("not poisoned");
        map.insert((witness.to_string(), cache_id), size);
    }
}

/// What a witness may answer, at most: a few signature lines or a size.
const MAX_ANSWER: usize = 4096;

/// The answer's first [`MAX_ANSWER`] bytes: a witness cannot make the log
/// hold (or log) more.
async fn read_limited(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ANSWER {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c[..c.len().min(MAX_ANSWER - body.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// Asks `w` to cosign `checkpoint` (size `size`); its cosignature line.
async fn cosign(
    state: &AppState,
    http: &reqwest::Client,
    sizes: &WitnessSizes,
    w: &WitnessConfig,
    cache_id: i64,
    size: u64,
    checkpoint: &str,
) -> Result<String> {
    // A 409 says what the witness has; one more try from there.
    for _ in 0..2 {
        let old = sizes.get(&w.name, cache_id);
        if old > size {
            bail!("it has cosigned {old} entries, more than this log's {size}");
        }
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            let wanted = tree::indexes_read_by(|h| tree::prove_consistency(size, old, h));
            let hashes = state.db.log_hashes(cache_id, &wanted).await?;
            tree::prove_consistency(size, old, &hashes)
                .map_err(|e| anyhow::anyhow!("a consistency proof from {old}: {e}"))?
        };
        let body = AddCheckpoint {
            old_size: old,
            proof,
            checkpoint: checkpoint.as_bytes().to_vec(),
        }
        .encode();
        let url = format!("{}/add-checkpoint", w.url.trim_end_matches('/'));
        let resp = http
            .post(&url)
            .body(body)
            .timeout(WITNESS_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status().as_u16();
        let text = read_limited(resp).await;
        match status {
            200 => {
                let line = text
                    .lines()
                    .find(|l| l.starts_with(&format!("— {} ", w.name)))
                    .with_context(|| format!("no cosignature line in its answer {text:?}"))?;
                let line = format!("{line}\n");
                let note = format!("{checkpoint}{line}");
                if count_cosignatures(note.as_bytes(), std::slice::from_ref(&w.verifier_key))? != 1
                {
                    bail!("its cosignature does not verify with its key");
                }
                sizes.set(&w.name, cache_id, size);
                return Ok(line);
            }
            409 => {
                let theirs: u64 = text
                    .trim()
                    .parse()
                    .with_context(|| format!("a 409 without a size: {text:?}"))?;
                // A size beyond this log's is never remembered: it would
                // stop every later round before it asks.
                if theirs > size {
                    bail!("it says it cosigned {theirs} entries, more than this log's {size}");
                }
                sizes.set(&w.name, cache_id, theirs);
            }
            s => bail!("it answered {s}: {text:?}"),
        }
    }
    bail!("its size kept changing")
}

/// Publishes every log whose checkpoint the quorum cosigned; returns the
/// entries still waiting for publication, over all logs.
pub async fn publish_all(
    state: &AppState,
    http: &reqwest::Client,
    sizes: &WitnessSizes,
) -> Result<u64> {
    let witnesses = &state.config.log.witnesses;
    let quorum = state.config.log.quorum();
    let mut waiting = 0;
    for (cache_id, head) in state.db.logs_unpublished().await? {
        // All witnesses at once; publication needs only the quorum's.
        let (size, checkpoint) = (head.size as u64, head.checkpoint.as_str());
        let mut asked: futures::stream::FuturesUnordered<_> = witnesses
            .iter()
            .map(|w| async move {
                let answer = tokio::time::timeout(
                    WITNESS_TIMEOUT * 2,
                    cosign(state, http, sizes, w, cache_id, size, checkpoint),
                )
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer in time")));
                (w, answer)
            })
            .collect();
        let mut lines = String::new();
        let mut got = 0;
        let mut refusals = Vec::new();
        while let Some((w, answer)) = futures::StreamExt::next(&mut asked).await {
            match answer {
                Ok(line) => {
                    lines.push_str(&line);
                    got += 1;
                    if got >= quorum {
                        break;
                    }
                }
                Err(e) => refusals.push(format!("{}: {e:#}", w.name)),
            }
        }
        drop(asked);
        if got >= quorum {
            let published = format!("{}{lines}", head.checkpoint);
            state
                .db
                .publish_checkpoint(cache_id, head.size, &published)
                .await?;
        } else {
            waiting += (head.size - head.published_size) as u64;
            tracing::warn!(
                cache_id,
                size = head.size,
                published = head.published_size,
                "log checkpoint waits for witnesses: {got} of {quorum} cosigned ({})",
                refusals.join("; ")
            );
        }
    }
    Ok(waiting)
}

pub async fn run_forever(state: &AppState) {
    // A witness's redirect is not followed: it could point the log at
    // services behind it.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let sizes = WitnessSizes::default();
    let interval = state
        .config
        .log
        .integrate_interval
        .max(Duration::from_millis(100));
    loop {
        match publish_all(state, &http, &sizes).await {
            Ok(waiting) => {
                state.metrics.log_unpublished_entries.set(waiting as i64);
            }
            Err(e) => tracing::warn!("log publication: {e:#}"),
        }
        tokio::time::sleep(interval).await;
    }
}
