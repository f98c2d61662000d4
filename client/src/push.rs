//! The push pipeline behind `provenix push` (`commands::push` holds its
//! flags): the closure of the given paths, minus what upstream caches sign
//! and what the cache has, streamed from the local store.

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use provenix_provenance::closure::{
    metadata_digest, ClosureStatement, VouchedPath, MAX_CLOSURE_PATHS,
};
use provenix_provenance::upload::{UploadOutcome, UploadPathNarInfo};
use provenix_provenance::{NarHash, StorePath};
use std::time::Instant;
use tokio::io::AsyncReadExt;

use provenix_provenance::ErrorCode;

use crate::api::{error_code, ApiClient};
use crate::exchange::{Credential, Session, Signer};
use crate::nix::{LocalStore, NarSource, PathInfo};

pub struct PushOptions {
    pub jobs: usize,
    pub closure: bool,
    /// Push paths an upstream cache signs too (Attic's
    /// `--ignore-upstream-cache-filter`).
    pub ignore_upstream: bool,
    /// Appends each push's summary to this file as a JSON line (`--summary`),
    /// for CI to report (the GitHub Action's job summary).
    pub summary: Option<std::path::PathBuf>,
}

#[derive(Default, Debug, serde::Serialize)]
pub struct PushSummary {
    pub cache: String,
    pub uploaded: usize,
    pub deduplicated: usize,
    pub already_cached: usize,
    pub upstream: usize,
    /// NAR bytes uploaded.
    pub bytes: u64,
    /// Who the signing key was certified for, and the key.
    pub subject: String,
    pub key_id: String,
}

impl PushSummary {
    /// Appends this summary to `file` as one JSON line.
    fn append_to(&self, file: &std::path::Path) -> Result<()> {
        use std::io::Write;
        let line = serde_json::to_string(self)? + "\n";
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .with_context(|| format!("cannot write the push summary to {}", file.display()))
    }
}

fn signed_by_upstream(info: &PathInfo, upstream: &[String]) -> bool {
    info.signatures
        .iter()
        .filter_map(|s| s.split_once(':').map(|(name, _)| name))
        .any(|name| upstream.iter().any(|u| u == name))
}

pub async fn push(
    server: &ApiClient,
    credential: Credential,
    store: &LocalStore,
    cache: &str,
    paths: &[String],
    opts: PushOptions,
) -> Result<PushSummary> {
    // Every upload is signed by a short-term key: get one first. Nix reads
    // the closure meanwhile (each takes tens of milliseconds).
    let (signer, all) = tokio::join!(
        Signer::start(server, credential, cache),
        store.path_infos(paths, opts.closure)
    );
    push_infos(&signer?, store, cache, all?, opts).await
}

/// [`push`] with a signer kept across pushes (a watcher's): its key is
/// renewed when it nears expiry, not exchanged per push.
pub async fn push_with(
    signer: &Signer,
    store: &LocalStore,
    cache: &str,
    paths: &[String],
    opts: PushOptions,
) -> Result<PushSummary> {
    let all = store.path_infos(paths, opts.closure).await?;
    push_infos(signer, store, cache, all, opts).await
}

async fn push_infos(
    signer: &Signer,
    store: &LocalStore,
    cache: &str,
    all: Vec<PathInfo>,
    opts: PushOptions,
) -> Result<PushSummary> {
    let session = signer.session().await?;
    eprintln!(
        "Signing as {} with key {} (valid until {}).",
        session.answer.identity.subject,
        session.key_id(),
        crate::time::format_time(session.answer.not_after)
    );
    let info = signer.api_for(&session).cache_info(cache).await?;
    let mut summary = PushSummary {
        cache: cache.to_string(),
        subject: session.answer.identity.subject.clone(),
        key_id: session.key_id().to_string(),
        ..PushSummary::default()
    };
    let summary_file = opts.summary.clone();
    let (upstream, candidates): (Vec<_>, Vec<_>) = all.into_iter().partition(|p| {
        !opts.ignore_upstream && signed_by_upstream(p, &info.upstream_cache_key_names)
    });
    summary.upstream = upstream.len();

    let mut by_hash = std::collections::HashMap::new();
    for p in candidates {
        let sp = StorePath::parse(&info.store_dir, &p.path)
            .with_context(|| format!("{} is not a store path of {}", p.path, info.store_dir))?;
        by_hash.insert(sp.hash_part().to_string(), p);
    }
    let mut missing = Vec::new();
    // Paths whose NAR the server holds for us: recorded without sending it.
    let mut nars_held = std::collections::HashSet::new();
    let mut max_request_body = 0;
    let hashes: Vec<(String, NarHash)> = by_hash
        .iter()
        .map(|(h, p)| (h.clone(), p.nar_hash))
        .collect();
    for batch in hashes.chunks(1000) {
        let api = signer.api_for(&*signer.session().await?);
        let answer = api.missing_paths(cache, batch.to_vec()).await?;
        missing.extend(answer.missing_paths);
        nars_held.extend(answer.nars_held);
        max_request_body = answer.max_request_body;
    }
    summary.already_cached = by_hash.len() - missing.len();
    let mut todo: Vec<PathInfo> = missing.iter().filter_map(|h| by_hash.remove(h)).collect();

    // Paths the cache already has: this push still vouches for them, in
    // one signed closure statement per thousand paths, so provenance shows
    // every builder. Any the cache lost meanwhile are uploaded.
    let present: Vec<PathInfo> = by_hash.into_values().collect();
    for batch in present.chunks(MAX_CLOSURE_PATHS) {
        let missing = vouch_for(signer, cache, &info.store_dir, batch).await?;
        summary.already_cached -= missing.len();
        todo.extend(batch.iter().filter(|p| missing.contains(&p.path)).cloned());
    }
    // References first, so a referrer rarely becomes visible before its closure.
    todo.sort_by_key(|p| p.references.len());

    if todo.is_empty() {
        eprintln!(
            "Nothing to push: {} already cached, {} from upstream caches.",
            summary.already_cached, summary.upstream
        );
        if let Some(file) = &summary_file {
            summary.append_to(file)?;
        }
        return Ok(summary);
    }

    let total_bytes: u64 = todo.iter().map(|p| p.nar_size).sum();
    let multi = MultiProgress::new();
    let overall = multi.add(ProgressBar::new(todo.len() as u64));
    overall.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} paths {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    overall.set_prefix(format!("Pushing to {cache}"));
    eprintln!(
        "Pushing {} paths ({}) to {cache}...",
        todo.len(),
        human_bytes(total_bytes)
    );
    let start = Instant::now();

    let results: Vec<(UploadOutcome, u64)> = futures::stream::iter(todo)
        .map(|p| {
            let multi = multi.clone();
            let overall = overall.clone();
            let (info, nars_held) = (&info, &nars_held);
            async move {
                let sp = StorePath::parse(&info.store_dir, &p.path)?;
                let may_dedup = nars_held.contains(sp.hash_part());
                let how = HowToSend {
                    may_dedup,
                    in_parts: max_request_body > 0 && p.nar_size > max_request_body,
                };
                let r = push_one(signer, store, cache, &p, how, &multi).await;
                overall.inc(1);
                r.map(|o| (o, p.nar_size))
                    .with_context(|| format!("pushing {}", p.path))
            }
        })
        .buffer_unordered(opts.jobs.max(1))
        .try_collect()
        .await?;
    overall.finish_and_clear();
    for (outcome, size) in results {
        match outcome {
            UploadOutcome::Uploaded => {
                summary.uploaded += 1;
                summary.bytes += size;
            }
            UploadOutcome::Deduplicated => summary.deduplicated += 1,
            _ => summary.already_cached += 1,
        }
    }
    let secs = start.elapsed().as_secs_f64().max(0.001);
    eprintln!(
        "Pushed {} paths ({}, {}/s), {} deduplicated, {} already cached, {} from upstream caches.",
        summary.uploaded,
        human_bytes(summary.bytes),
        human_bytes((summary.bytes as f64 / secs) as u64),
        summary.deduplicated,
        summary.already_cached,
        summary.upstream
    );
    if let Some(file) = &summary_file {
        summary.append_to(file)?;
    }
    Ok(summary)
}

/// Vouches for `paths` (at most [`MAX_CLOSURE_PATHS`]) in a signed closure
/// statement, with a fresh key if the current one expired; returns the
/// store paths the cache did not hold. The server keeps only a statement
/// whose every path it holds: when some went (GC meanwhile), the rest are
/// vouched for in a statement of their own.
async fn vouch_for(
    signer: &Signer,
    cache: &str,
    store_dir: &str,
    paths: &[PathInfo],
) -> Result<std::collections::HashSet<String>> {
    let mut lines = paths
        .iter()
        .map(|p| vouched_path(store_dir, p))
        .collect::<Result<Vec<_>>>()?;
    let mut missing = std::collections::HashSet::new();
    let mut session = signer.session().await?;
    while !lines.is_empty() {
        let mut st = ClosureStatement {
            cache: cache.to_string(),
            paths: lines.clone(),
            key_id: None,
            nonce: None,
            signature: None,
        };
        st.sign(session.key_id(), &session.key);
        match signer.api_for(&session).record_closure_statement(&st).await {
            Err(e)
                if error_code(&e) == Some(ErrorCode::KeyExpired) && !session_is_fresh(&session) =>
            {
                session = signer.renew(&session).await?;
            }
            r => {
                let answer = r.context("vouching for the paths the cache holds")?;
                if answer.missing.is_empty() {
                    break;
                }
                lines.retain(|l| !answer.missing.contains(&l.store_path));
                missing.extend(answer.missing);
            }
        }
    }
    Ok(missing)
}

/// A path's line in a closure statement: its NAR, and the digest of its
/// references, deriver and CA as the local store has them.
fn vouched_path(store_dir: &str, p: &PathInfo) -> Result<VouchedPath> {
    let base = |path: &str| {
        StorePath::parse(store_dir, path)
            .map(|sp| sp.base_name())
            .with_context(|| format!("{path} is not a store path of {store_dir}"))
    };
    let references = p
        .references
        .iter()
        .map(|r| base(r))
        .collect::<Result<Vec<_>>>()?;
    let deriver = p.deriver.as_deref().map(base).transpose()?;
    Ok(VouchedPath {
        store_path: p.path.clone(),
        nar_hash: p.nar_hash,
        nar_size: p.nar_size,
        metadata: metadata_digest(&references, deriver.as_deref(), p.ca.as_deref()),
    })
}

/// One path, signed by the current key; once more with a fresh key if the
/// server says the key expired meanwhile (a slow upload, a skewed clock).
/// How a path goes to the server.
#[derive(Clone, Copy)]
struct HowToSend {
    /// The server holds its NAR for us: record it without sending.
    may_dedup: bool,
    /// Larger than the server's request limit: send the NAR in parts.
    in_parts: bool,
}

async fn push_one(
    signer: &Signer,
    store: &LocalStore,
    cache: &str,
    p: &PathInfo,
    how: HowToSend,
    multi: &MultiProgress,
) -> Result<UploadOutcome> {
    let mut session = signer.session().await?;
    let mut gc_retries = 0;
    loop {
        match push_signed(signer, &session, store, cache, p, how, multi).await {
            Err(e)
                if error_code(&e) == Some(ErrorCode::KeyExpired) && !session_is_fresh(&session) =>
            {
                session = signer.renew(&session).await?;
            }
            // Garbage collection took a chunk this upload relied on: the
            // server stored nothing; sending again stores it afresh.
            Err(e) if error_code(&e) == Some(ErrorCode::Retry) && gc_retries < 3 => {
                gc_retries += 1;
            }
            r => return r,
        }
    }
}

/// A session renewed moments ago is not renewed again: a server that keeps
/// refusing fresh keys (a badly wrong clock) must not loop forever.
fn session_is_fresh(s: &Session) -> bool {
    let age = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        - s.answer.not_before;
    age < 2
}

async fn push_signed(
    signer: &Signer,
    session: &Session,
    store: &LocalStore,
    cache: &str,
    p: &PathInfo,
    how: HowToSend,
    multi: &MultiProgress,
) -> Result<UploadOutcome> {
    let api = signer.api_for(session);
    let info = signed_statement(cache, p, session);
    if how.may_dedup {
        let claim = api.record_existing_nar(&info).await?;
        if claim.outcome != UploadOutcome::NarRequired {
            return Ok(claim.outcome);
        }
        // Refused without a record: the statement's nonce is unspent,
        // so the upload below may carry the same statement.
    }
    let bar = multi.add(ProgressBar::new(p.nar_size));
    bar.set_style(
        ProgressStyle::with_template(
            "  {msg:40!} [{bar:25}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(p.path.rsplit('/').next().unwrap_or_default().to_string());

    let progress = bar.clone();
    let result = match (store.nar(&p.path)?, how.in_parts) {
        (NarSource::Files(nar), false) => {
            let stream = nar.inspect_ok(move |b| progress.inc(b.len() as u64));
            api.upload(&info, reqwest::Body::wrap_stream(stream))
                .await
                .map(|r| r.outcome)
        }
        (NarSource::Files(nar), true) => {
            let reader = tokio_util::io::StreamReader::new(nar);
            crate::upload_parts::send(&api, &info, reader, &progress).await
        }
        (NarSource::Nix(mut child), in_parts) => {
            let stdout = child.stdout.take().context("no stdout from nix")?;
            let mut stderr = child.stderr.take().context("no stderr from nix")?;
            let (api, info, progress) = (&api, &info, progress.clone());
            let upload = async move {
                if in_parts {
                    crate::upload_parts::send(api, info, stdout, &progress).await
                } else {
                    let stream = tokio_util::io::ReaderStream::with_capacity(stdout, 256 * 1024)
                        .inspect_ok({
                            let progress = progress.clone();
                            move |b| progress.inc(b.len() as u64)
                        });
                    api.upload(info, reqwest::Body::wrap_stream(stream))
                        .await
                        .map(|r| r.outcome)
                }
            };
            let (result, status) = tokio::join!(upload, child.wait());
            let status = status?;
            if !status.success() {
                let mut err = String::new();
                let _ = stderr.read_to_string(&mut err).await;
                bar.finish_and_clear();
                bail!("nix store dump-path failed: {}", err.trim());
            }
            result
        }
    };
    bar.finish_and_clear();
    result
}

/// The statement for `p`, signed by the session's key.
fn signed_statement(cache: &str, p: &PathInfo, session: &Session) -> UploadPathNarInfo {
    let mut info = UploadPathNarInfo {
        cache: cache.to_string(),
        store_path: p.path.clone(),
        nar_hash: p.nar_hash,
        nar_size: p.nar_size,
        references: p.references.clone(),
        deriver: p.deriver.clone(),
        ca: p.ca.clone(),
        key_id: None,
        nonce: None,
        signature: None,
    };
    info.sign(session.key_id(), &session.key);
    info
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
