//! What the transparency log costs: the same cold closure push, with a
//! narinfo load running beside it, on a server whose log integrates every
//! 250 ms (the default) and on one whose log never integrates during the
//! run (`integrate-interval = "1 day"`: entries are still sequenced in the
//! ledger, which is not the log's cost). Then, on the log's server: how
//! long a committed entry waits for a checkpoint under that push load,
//! tile serving against nginx serving the same tile files, and how long
//! verifying a tlog-proof takes.

use anyhow::{Context, Result};
use provenix_provenance::tlog::checkpoint::LogKey;
use provenix_provenance::tlog::proof::TlogProof;
use provenix_provenance::tlog::tree::{self, Hashes};
use provenix_provenance::tlog::witness::Cosigner;
use provenix_tests::Client;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::closure::{self, Closure};
use crate::server::Provenixd;
use crate::{nginx, output, provenix, ratio_target, wrk, Run, Target, MB};

const LOG_OFF: &str = "[log]\nintegrate-interval = \"1 day\"\n";

/// A fresh server (its log on or off), a client logged in, a cache `log`
/// holding the `seed` closure (what the narinfo load asks for).
fn server(r: &Run, work: &Path, log_on: bool, seed: &Closure) -> Result<(Provenixd, Client)> {
    let mut server = Provenixd::start(r.bin_dir, work)?;
    if !log_on {
        server.restart_with(r.bin_dir, LOG_OFF)?;
    }
    let client = Client::with(r.bin_dir.join("provenix"), tempfile::tempdir_in(work)?);
    provenix(
        &client,
        &["login", "local", &server.url, &server.root_token],
    )?;
    provenix(&client, &["cache", "create", "log", "--public"])?;
    closure::push_closure(&client, r.store, "log", &seed.top)?;
    Ok((server, client))
}

/// The push's seconds and the narinfo load's requests/s during it.
fn push_under_load(
    r: &Run,
    server: &Provenixd,
    client: &Client,
    closure: &Closure,
    script: &Path,
    secs: u32,
) -> Result<(f64, f64)> {
    let url = format!("{}/", server.url);
    let script = script.to_path_buf();
    let load = std::thread::spawn(move || wrk::run(&url, 4, secs, Some(&script)));
    let push = closure::push_closure(client, r.store, "log", &closure.top)?;
    let load = load.join().expect("wrk thread")?;
    Ok((push, load.requests_per_sec))
}

/// Seconds from each ledger entry's commit (seen in the database) to a
/// checkpoint covering it (seen over HTTP), polled every 20 ms while
/// `busy` holds; returns them sorted.
fn checkpoint_lag(db: &Path, url: &str, busy: Arc<AtomicBool>) -> Result<Vec<f64>> {
    let mut committed: Vec<Instant> = Vec::new();
    let mut covered: Vec<Instant> = Vec::new();
    loop {
        let stop = !busy.load(Ordering::Relaxed);
        let now = Instant::now();
        let seq: usize = output(Command::new("sqlite3").arg(db).arg(
            "SELECT COALESCE(MAX(l.seq), 0) FROM ledger l JOIN caches c ON c.id = l.cache_id WHERE c.name = 'log'",
        ))?
        .trim()
        .parse()
        .unwrap_or(0);
        while committed.len() < seq {
            committed.push(now);
        }
        let size = checkpoint_size(url) as usize;
        let now = Instant::now();
        while covered.len() < size.min(committed.len()) {
            covered.push(now);
        }
        if stop && covered.len() >= committed.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut lags: Vec<f64> = committed
        .iter()
        .zip(&covered)
        .map(|(c, v)| v.duration_since(*c).as_secs_f64())
        .collect();
    lags.sort_by(f64::total_cmp);
    Ok(lags)
}

/// Microseconds to parse and verify one tlog-proof (checkpoint signature,
/// one witness cosignature, inclusion in a tree of 2^20 entries).
fn proof_verify_micros() -> Result<f64> {
    let origin = "bench.example/log/tlog";
    let n: u64 = 1 << 20;
    let entries: Vec<Vec<u8>> = (0..n).map(|i| i.to_le_bytes().to_vec()).collect();
    let appended = tree::append(0, &entries, Hashes::default())?;
    let index = n / 3;
    let hashes = Hashes::new(appended.stored);
    let proof = tree::prove_inclusion(n, index, &hashes)?;
    let key = LogKey::new(origin, ed25519_dalek_key(1))?;
    let note = key.sign(n, appended.root);
    let text_end = note
        .windows(2)
        .position(|w| w == b"\n\n")
        .context("a note")?
        + 1;
    let witness = Cosigner::new("witness.example", ed25519_dalek_key(2))?;
    let mut cosigned = note.clone();
    cosigned.extend_from_slice(witness.cosign(&note[..text_end], 1_700_000_000).as_bytes());
    let text = TlogProof {
        extra: Some(entries[index as usize].clone()),
        index,
        proof,
        checkpoint: cosigned,
    }
    .encode();
    let (vkey, wkey) = (key.verifier_key(), vec![witness.verifier_key()]);
    let rounds = 2000;
    let start = Instant::now();
    for _ in 0..rounds {
        let p = TlogProof::parse(&text)?;
        p.verify(&vkey, origin, &wkey, 1)?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds))
}

fn ed25519_dalek_key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

pub fn section(r: &Run, targets: &mut Vec<Target>) -> Result<()> {
    let full = r.plan.repeats > 1;
    let (count, secs) = if full { (300, 4) } else { (60, 1) };
    let work = r.work.join("log");
    std::fs::create_dir_all(&work)?;
    let seed = closure::build(r.store, 40, 31)?;
    let sample: Vec<String> = seed_hashes(&seed);
    let script = work.join("narinfo.lua");
    wrk::random_paths_script(&script, "/log/", &sample)?;

    // Runs in turns, log on and off, each on fresh servers (a cold push).
    let (mut on, mut off) = (Vec::new(), Vec::new());
    let mut kept = None;
    for n in 0..r.plan.repeats.max(1) {
        let closure = closure::build(r.store, count, 40 + u64::from(n))?;
        let (s, c) = server(r, &work.join(format!("off-{n}")), false, &seed)?;
        off.push(push_under_load(r, &s, &c, &closure, &script, secs)?);
        drop((s, c));
        let (s, c) = server(r, &work.join(format!("on-{n}")), true, &seed)?;
        on.push(push_under_load(r, &s, &c, &closure, &script, secs)?);
        kept = Some((s, c, closure));
    }
    let best = |runs: &[(f64, f64)]| runs.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    let rate = |runs: &[(f64, f64)]| crate::median(runs.iter().map(|r| r.1).collect());
    let (server, client, closure) = kept.context("a run")?;
    let mb = closure.nar_bytes as f64 / MB;
    let (push_on, push_off) = (mb / best(&on), mb / best(&off));
    let (narinfo_on, narinfo_off) = (rate(&on), rate(&off));

    // Under a push load: how long entries wait for a checkpoint.
    let busy = Arc::new(AtomicBool::new(true));
    let lagging = {
        let busy = busy.clone();
        let db = server.database()?;
        let url = format!("{}/log/tlog/checkpoint", server.url);
        std::thread::spawn(move || checkpoint_lag(&db, &url, busy))
    };
    let more = closure::build(r.store, count, 90)?;
    closure::push_closure(&client, r.store, "log", &more.top)?;
    busy.store(false, Ordering::Relaxed);
    let lags = lagging.join().expect("poller")?;
    let pct = |p: f64| lags[((lags.len() as f64 * p) as usize).min(lags.len() - 1)];

    // Tiles: provenix against nginx serving the same files.
    let size = checkpoint_size(&format!("{}/log/tlog/checkpoint", server.url));
    let tile = if size >= 256 {
        "tile/0/000".to_string()
    } else {
        format!("tile/0/000.p/{size}")
    };
    let tiles_dir = work.join("tiles");
    let file = tiles_dir.join("log/tlog").join(&tile);
    std::fs::create_dir_all(file.parent().context("a directory")?)?;
    output(
        Command::new("curl")
            .args(["-sf", "-o"])
            .arg(&file)
            .arg(format!("{}/log/tlog/{tile}", server.url)),
    )?;
    let nginx = nginx::Nginx::start(&work, &tiles_dir)?;
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..r.plan.repeats.max(1) {
        base.push(wrk::run(
            &format!("{}/log/tlog/{tile}", nginx.url),
            8,
            secs,
            None,
        )?);
        ours.push(wrk::run(
            &format!("{}/log/tlog/{tile}", server.url),
            8,
            secs,
            None,
        )?);
    }
    let (ours, base) = (
        wrk::Load::median(ours.into_iter()),
        wrk::Load::median(base.into_iter()),
    );
    let verify_us = proof_verify_micros()?;

    println!(
        "## Transparency log\n\nA cold push of a synthetic closure ({} paths, {mb:.0} MB of NAR) with a narinfo load beside it (wrk, 4 connections, {secs} s, {} paths), on fresh servers in turns: the log integrating every 250 ms (the default) against a log that does not integrate during the run. Then, on the log's server, another closure pushed while entries' commits (polled in the database) and the checkpoints covering them (polled over HTTP) are watched every 20 ms; the hash tile `{tile}` from provenix and from nginx serving the same file; a tlog-proof in a tree of 2^20 entries parsed and verified in-process.\n",
        closure.paths,
        sample.len()
    );
    println!("| | log on | log off | ratio |\n|---|---|---|---|");
    println!(
        "| push (MB/s, best) | {push_on:.1} | {push_off:.1} | {:.0}% |",
        push_on / push_off * 100.0
    );
    println!(
        "| narinfo during the push (req/s, median) | {narinfo_on:.0} | {narinfo_off:.0} | {:.0}% |",
        narinfo_on / narinfo_off * 100.0
    );
    println!(
        "\nCommit to checkpoint, {} entries: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (polling adds up to 40 ms).\n",
        lags.len(),
        pct(0.5) * 1e3,
        pct(0.99) * 1e3,
        lags.last().copied().unwrap_or(0.0) * 1e3
    );
    println!(
        "| tile `{tile}` | req/s | p99 |\n|---|---|---|\n| nginx | {:.0} | {:.2} ms |\n| provenix | {:.0} | {:.2} ms |\n",
        base.requests_per_sec, base.p99_ms, ours.requests_per_sec, ours.p99_ms
    );
    println!("tlog-proof parse and verify: {verify_us:.0} µs\n");
    ratio_target(
        targets,
        "push with the log on",
        push_on,
        push_off,
        0.95,
        "MB/s",
    );
    ratio_target(
        targets,
        "narinfo during a push with the log on",
        narinfo_on,
        narinfo_off,
        0.95,
        "req/s",
    );
    targets.push(Target {
        what: "a checkpoint covers a commit within 1 s at p99 under a push load".into(),
        figure: format!("p99 {:.0} ms", pct(0.99) * 1e3),
        holds: pct(0.99) <= 1.0,
    });
    ratio_target(
        targets,
        "tile serving",
        ours.requests_per_sec,
        base.requests_per_sec,
        0.8,
        "req/s",
    );
    targets.push(Target {
        what: "verifying a tlog-proof takes under 1 ms".into(),
        figure: format!("{verify_us:.0} µs"),
        holds: verify_us < 1000.0,
    });
    if ours.errors + base.errors > 0 {
        anyhow::bail!("the tile load had errors");
    }
    Ok(())
}

/// The hash parts of the seed closure's paths (narinfo names).
fn seed_hashes(seed: &Closure) -> Vec<String> {
    seed.members
        .iter()
        .filter_map(|p| p.strip_prefix("/nix/store/"))
        .filter_map(|b| b.get(..32))
        .map(str::to_string)
        .collect()
}

/// The size of the checkpoint at `url` (0 before the first).
fn checkpoint_size(url: &str) -> u64 {
    output(Command::new("curl").args(["-sf", url]))
        .ok()
        .and_then(|t| t.lines().nth(1).and_then(|l| l.parse().ok()))
        .unwrap_or(0)
}
