//! `provenix-soak` (run it with scripts/soak.sh): two replicas over
//! PostgreSQL and S3 (s3s-fs) under CI pushers, Nix pullers, revocations
//! and GC at once for minutes, with an independent checker holding every
//! replica to what the soak itself saw acknowledged (model.rs). Prints
//! Markdown for docs/reliability.md and exits 1 on any violation.

mod checker;
mod model;
mod stats;
mod workload;

use anyhow::{bail, Context, Result};
use clap::Parser;
use provenix_tests::ci::ADD_PUBLISHER;
use provenix_tests::oidc::OidcIssuer;
use provenix_tests::{Backend, NixStore, ObjectStorage, TestServer};
use rand::SeedableRng;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checker::Checker;
use model::{Expect, Model, Observed};
use stats::Stats;
use workload::{Pusher, World};

/// The cache CI pushes to and revocations take runs out of.
const MAIN: &str = "main";
/// A cache whose GC deletes what is not pulled within `RETENTION`.
const SCRATCH: &str = "scratch";
const RETENTION: Duration = Duration::from_secs(90);

#[derive(Parser)]
#[command(name = "provenix-soak")]
struct Args {
    /// How long the load runs
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// CI runs pushing to `main` at once (one more pushes to `scratch`)
    #[arg(long, default_value_t = 3)]
    pushers: u64,
    /// Seconds between revocations of a run
    #[arg(long, default_value_t = 30)]
    revoke_every: u64,
    /// Where the replicas' logs are copied when the soak ends
    #[arg(long, default_value = "target/soak")]
    logs: std::path::PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    match runtime.block_on(soak(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A child process that does not outlive the soak.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The resident set of a process now, in KiB.
fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn soak(args: Args) -> Result<bool> {
    let issuer = Arc::new(OidcIssuer::start());
    let extra = format!(
        "[garbage-collection]\ninterval = \"20s\"\nchunk-grace-period = \"1 minute\"\n\n{}audience = \"provenix-soak\"\n",
        issuer.server_toml("github")
    );
    eprintln!("==> replica A (monolithic: serves and runs GC) on PostgreSQL + S3");
    let server = TestServer::start_on(Backend::Postgres, ObjectStorage::S3, &extra);
    let b_dir = tempfile::tempdir()?;
    let (replica_b, b_url) = provenix_tests::server::spawn_server(
        &server.config_path,
        b_dir.path(),
        &["--mode", "api-server", "--listen", "127.0.0.1:0"],
    );
    let replica_b = KillOnDrop(replica_b);
    eprintln!("==> replica A {}, replica B {b_url}", server.url);
    let admin_token = server.token_with(
        "soak-admin",
        &[
            "pull",
            "push",
            "delete",
            "create-cache",
            "configure-cache",
            "configure-cache-retention",
            "revoke",
            "audit",
        ],
    );
    let admin = server.client_with_token(&admin_token);
    for cache in [MAIN, SCRATCH] {
        admin.ok(&["cache", "create", cache]);
        let mut add = ADD_PUBLISHER;
        add[2] = cache;
        admin.ok(&add);
    }
    admin.ok(&[
        "cache",
        "configure",
        SCRATCH,
        "--retention-period",
        &format!("{}s", RETENTION.as_secs()),
    ]);
    let key = admin.public_key(MAIN);

    let mut model = Model::default();
    model.retention.insert(SCRATCH.to_string(), RETENTION);
    let world = World {
        model: Arc::new(Mutex::new(model)),
        stats: Arc::new(Stats::default()),
        stop: Arc::new(AtomicBool::new(false)),
        issuer: issuer.clone(),
        replicas: vec![server.url.clone(), b_url.clone()],
        root_token: admin_token.clone(),
    };

    // A pinned closure in the retention cache: no GC may take it.
    let pinned_run = {
        let pusher = Pusher {
            world: world.clone(),
            cache: SCRATCH.to_string(),
            first_run: 1,
            reuse_earlier: false,
        };
        let store = NixStore::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        pusher.push_run(&store, &mut rng, 1, &server.url, &[]);
        let mut model = world.model.lock().unwrap();
        let run = model.runs[&1].clone();
        if run.acked.is_none() {
            bail!("the first push failed: {:?}", world.stats.errors());
        }
        model.pinned.extend(run.paths.iter().cloned());
        run
    };
    admin.ok(&["pin", SCRATCH, "kept", pinned_run.paths.last().unwrap()]);

    let started = Instant::now();
    let until = started + Duration::from_secs(args.minutes * 60);
    eprintln!("==> load for {} minutes", args.minutes);
    let mut threads = Vec::new();
    for n in 0..args.pushers {
        let pusher = Pusher {
            world: world.clone(),
            cache: MAIN.to_string(),
            first_run: 1_000_000 * (n + 1),
            reuse_earlier: true,
        };
        threads.push(std::thread::spawn(move || pusher.run()));
    }
    let scratch = Pusher {
        world: world.clone(),
        cache: SCRATCH.to_string(),
        first_run: 100,
        reuse_earlier: false,
    };
    threads.push(std::thread::spawn(move || scratch.run()));
    {
        let w = world.clone();
        let every = Duration::from_secs(args.revoke_every);
        threads.push(std::thread::spawn(move || {
            workload::revoker(w, MAIN, every)
        }));
    }
    for seed in 0..2 {
        let (w, key) = (world.clone(), key.clone());
        threads.push(std::thread::spawn(move || {
            workload::nix_puller(w, MAIN, &key, seed)
        }));
    }
    let mut checkers = Vec::new();
    for seed in 0..2 {
        let c = Checker::new(world.clone());
        checkers.push(tokio::spawn(c.run(seed + 10)));
    }

    // Resident memory of both replicas, sampled every 5 s.
    let a_pid = server.pid();
    let b_pid = replica_b.0.id();
    let mut rss: Vec<(u64, u64, u64)> = Vec::new();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(5)).await;
        rss.push((
            started.elapsed().as_secs(),
            resident_kib(a_pid),
            resident_kib(b_pid),
        ));
        let c = world.stats.counts();
        eprintln!(
            "    {:>4}s: {} checks, {} paths pushed, {} violations; RSS A {} MiB, B {} MiB",
            started.elapsed().as_secs(),
            c.get("checks").unwrap_or(&0),
            c.get("pushed paths").unwrap_or(&0),
            world
                .stats
                .violations()
                .values()
                .map(Vec::len)
                .sum::<usize>(),
            resident_kib(a_pid) / 1024,
            resident_kib(b_pid) / 1024,
        );
    }
    eprintln!("==> stopping the load (finishing what started)");
    world.stop.store(true, Ordering::SeqCst);
    for c in checkers {
        c.await?;
    }
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?;
    }
    let load_secs = started.elapsed().as_secs_f64();

    // Every path the soak ever pushed, on both replicas, now that nothing
    // is in flight: exactly as the model says.
    eprintln!("==> final sweep of every path on both replicas");
    let sweeper = Arc::new(Checker::new(world.clone()));
    let paths = world.model.lock().unwrap().order.clone();
    let mut sweeps = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(8));
    for path in &paths {
        for replica in 0..2 {
            let (sweeper, slots, world) = (sweeper.clone(), slots.clone(), world.clone());
            let path = path.clone();
            sweeps.spawn(async move {
                let _slot = slots.acquire().await;
                let expect = world.model.lock().unwrap().expect(&path, Instant::now());
                (expect, sweeper.check(&path, replica).await)
            });
        }
    }
    let (mut present, mut absent, mut either) = (0u64, 0u64, 0u64);
    while let Some(done) = sweeps.join_next().await {
        match done? {
            (Expect::Either, Some(_)) => either += 1,
            (_, Some(Observed::Present)) => present += 1,
            (_, Some(Observed::Absent)) => absent += 1,
            (_, None) => {}
        }
    }
    let (verify_ok, verify_out, verify_err) = server.run_mode("verify");
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await?
        .text()
        .await
        .context("GET /metrics")?;
    let b_metrics = reqwest::get(format!("{b_url}/metrics"))
        .await?
        .text()
        .await?;

    let report = Report {
        args: &args,
        load_secs,
        stats: &world.stats,
        rss: &rss,
        sweep: (paths.len(), present, absent, either),
        verify: (verify_ok, verify_out.trim().to_string(), verify_err),
        metrics: [&metrics, &b_metrics],
        runs: world.model.lock().unwrap().runs.len(),
    };
    let clean = report.print();
    std::fs::create_dir_all(&args.logs)?;
    std::fs::write(args.logs.join("replica-a.log"), server.log())?;
    std::fs::copy(
        b_dir.path().join("server.log"),
        args.logs.join("replica-b.log"),
    )?;
    eprintln!("==> replica logs in {}", args.logs.display());
    drop(replica_b);
    Ok(clean)
}

struct Report<'a> {
    args: &'a Args,
    load_secs: f64,
    stats: &'a Stats,
    rss: &'a [(u64, u64, u64)],
    /// (paths, due present and served, due absent and 404, either)
    sweep: (usize, u64, u64, u64),
    verify: (bool, String, String),
    metrics: [&'a str; 2],
    runs: usize,
}

/// The sum of a metric family's samples (all labels) in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Report<'_> {
    /// Prints the Markdown; true when the soak found nothing wrong.
    fn print(&self) -> bool {
        let violations = self.stats.violations();
        let errors = self.stats.errors();
        println!(
            "## Soak: {} min, {} CI pushers to `main` and 1 to `scratch`, 2 Nix pullers, 2 checkers, a revocation every {} s, GC every 20 s\n",
            self.args.minutes, self.args.pushers, self.args.revoke_every
        );
        println!("| operations | count |\n|---|---|");
        println!(
            "| CI runs (each its own OIDC token and key) | {} |",
            self.runs
        );
        for (what, n) in self.stats.counts() {
            println!("| {what} | {n} |");
        }
        for (name, label) in [
            (
                "provenix_uploads_total",
                "uploads accepted (both replicas, all outcomes)",
            ),
            ("provenix_revoked_paths_total", "paths revoked (404 since)"),
            ("provenix_gc_runs_total", "GC runs (replica A)"),
            (
                "provenix_gc_expired_paths_total",
                "paths GC expired (retention)",
            ),
            ("provenix_gc_reclaimed_bytes_total", "bytes GC reclaimed"),
        ] {
            let total: f64 = self.metrics.iter().map(|m| metric(m, name)).sum();
            println!("| {label} | {total} |");
        }
        println!("\n| latency | count | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|");
        for (op, s) in self.stats.summaries() {
            println!(
                "| {op} | {} | {:.1} | {:.1} | {:.1} |",
                s.count, s.p50, s.p99, s.max
            );
        }
        println!("\n| errors by kind | count | first message |\n|---|---|---|");
        if errors.is_empty() {
            println!("| none | 0 | |");
        }
        for (op, kind, n, msg) in &errors {
            println!(
                "| {op}: {kind} | {n} | {} |",
                msg.replace('\n', " ").replace('|', "/")
            );
        }
        println!(
            "\n| minute | RSS replica A (MiB, max) | RSS replica B (MiB, max) |\n|---|---|---|"
        );
        let minutes = self.rss.last().map_or(0, |r| r.0 / 60 + 1);
        for m in 0..minutes {
            let in_minute = self.rss.iter().filter(|r| r.0 / 60 == m);
            let (a, b) = in_minute.fold((0, 0), |(a, b), r| (a.max(r.1), b.max(r.2)));
            println!(
                "| {} | {:.0} | {:.0} |",
                m + 1,
                a as f64 / 1024.0,
                b as f64 / 1024.0
            );
        }
        let (paths, present, absent, either) = self.sweep;
        println!(
            "\nFinal sweep of all {paths} paths on both replicas: {present} due and served byte-exact, {absent} revoked and 404, {either} either (a failed push's, or past retention). `provenixd --mode verify`: {}.",
            if self.verify.0 { "clean" } else { "DAMAGED" }
        );
        println!("Load ran {:.0} s.", self.load_secs);
        if !self.verify.0 {
            println!("\n```\n{}\n{}\n```", self.verify.1, self.verify.2);
        }
        println!("\n| violations | count | first |\n|---|---|---|");
        if violations.is_empty() {
            println!("| none | 0 | |");
        }
        for (kind, list) in &violations {
            println!(
                "| {kind} | {} | {} |",
                list.len(),
                list[0].replace('|', "/")
            );
        }
        violations.is_empty() && self.verify.0
    }
}
