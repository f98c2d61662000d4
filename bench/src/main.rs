//! `provenix-bench` (run it with scripts/bench.sh): starts provenixd with its
//! default settings and measures push, pull and narinfo serving, each beside
//! a baseline measured in the same run on the same bytes (zstd, nginx), and
//! prints whether each target of docs/performance.md holds. Output is
//! Markdown, to paste into that file.

mod closure;
mod log;
mod nginx;
mod nix_store;
mod probe;
mod scaling;
mod server;
mod synthetic;
mod wrk;

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use provenix_tests::{Client, NixStore};
use server::Provenixd;

const MB: f64 = 1e6;
const MIB: u64 = 1 << 20;

/// What one run measures; `--quick` shrinks everything for a smoke run.
struct Plan {
    /// Seconds per wrk run.
    load_secs: u32,
    /// Sizes of the synthetic NARs for the memory measurement.
    big_nars: Vec<u64>,
    /// Path counts for the narinfo scaling measurement.
    path_counts: Vec<u64>,
    /// Runs of each timed transfer (the best is kept) and of each narinfo
    /// load (the median is kept), baseline and provenix in turns.
    repeats: u32,
    /// `--only SECTION`: that section (and what it needs) and nothing else.
    only: Option<String>,
}

/// The bench's sections, in run order; `--only` takes one of these.
const SECTIONS: [&str; 7] = [
    "push", "pull", "narinfo", "closure", "log", "memory", "scaling",
];

impl Plan {
    /// Whether `section` runs: all do by default; with `--only`, the chosen
    /// one and those it builds on (pull and narinfo need the pushed path,
    /// narinfo the nginx that pull starts).
    fn runs(&self, section: &str) -> bool {
        let Some(only) = &self.only else {
            return true;
        };
        match only.as_str() {
            "pull" => ["push", "pull"].contains(&section),
            "narinfo" => ["push", "pull", "narinfo"].contains(&section),
            other => other == section,
        }
    }
}

/// What every section works with.
struct Run<'a> {
    plan: &'a Plan,
    work: &'a Path,
    /// Where provenixd and provenix are (the closure section starts more
    /// servers).
    bin_dir: &'a Path,
    server: &'a Provenixd,
    client: &'a Client,
    /// The private store the pushed paths are made in.
    store: &'a NixStore,
    /// The `bench` cache's key, which pulls trust.
    public_key: &'a str,
}

struct Target {
    what: String,
    figure: String,
    holds: bool,
}

/// Measures provenixd with its default settings beside same-run baselines
/// (zstd, nginx) and prints Markdown for docs/performance.md.
#[derive(Parser, Debug)]
#[command(
    name = "provenix-bench",
    after_help = "Environment: PROVENIX_BENCH_TREE (the realistic store path's source, default: the Rust toolchain's lib/), PROVENIX_BENCH_DIR (work directory), PROVENIX_BIN_DIR (provenixd and provenix, default: beside this binary)"
)]
struct Args {
    /// Small sizes and short runs (a smoke run, not figures to publish)
    #[arg(long)]
    quick: bool,
    /// Keep the work directory
    #[arg(long)]
    keep: bool,
    /// Run one section (and what it needs)
    #[arg(long, value_name = "SECTION", value_parser = clap::builder::PossibleValuesParser::new(SECTIONS))]
    only: Option<String>,
}

fn main() -> ExitCode {
    let Args { quick, keep, only } = Args::parse();
    let plan = if quick {
        Plan {
            load_secs: 2,
            big_nars: vec![64 * MIB, 256 * MIB],
            path_counts: vec![1_000, 10_000],
            repeats: 1,
            only,
        }
    } else {
        Plan {
            load_secs: 5,
            big_nars: vec![256 * MIB, 1024 * MIB, 2048 * MIB],
            path_counts: vec![10_000, 100_000, 1_000_000],
            repeats: 3,
            only,
        }
    };
    let work = std::env::var_os("PROVENIX_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("provenix-bench-{}", std::process::id()))
        });
    // A fixture shared with the tests panics where the bench would fail:
    // the panic is printed, then handled as any failure (the work directory
    // removed, exit code 2).
    let result = std::panic::catch_unwind(|| run(&plan, &work))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("a fixture panicked (above)")));
    if keep {
        eprintln!("work directory kept: {}", work.display());
    } else {
        let _ = nix_store::remove_store(&work);
    }
    match result {
        Ok(targets) => {
            println!("\n## Targets\n\n| target | figure | holds |\n|---|---|---|");
            for t in &targets {
                let verdict = if t.holds { "yes" } else { "**no**" };
                println!("| {} | {} | {verdict} |", t.what, t.figure);
            }
            let held = targets.iter().filter(|t| t.holds).count();
            println!("\n{held} of {} targets hold.", targets.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("provenix-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(plan: &Plan, work: &Path) -> Result<Vec<Target>> {
    std::fs::create_dir_all(work)?;
    let bin_dir =
        std::env::var_os("PROVENIX_BIN_DIR").map_or_else(provenix_tests::bin_dir, PathBuf::from);
    for tool in ["nix", "nix-store", "zstd", "curl", "wrk", "sqlite3"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            bail!("{tool} is not installed (scripts/bench.sh installs what the bench needs)");
        }
    }
    print_machine()?;

    let server = Provenixd::start(&bin_dir, work)?;
    // Its home is in the work directory, which goes (or stays, --keep) whole.
    let client_home = tempfile::Builder::new()
        .prefix("client-home")
        .disable_cleanup(true)
        .tempdir_in(work)?;
    let client = Client::with(bin_dir.join("provenix"), client_home);
    provenix(
        &client,
        &["login", "local", &server.url, &server.root_token],
    )?;
    provenix(&client, &["cache", "create", "bench", "--public"])?;
    let public_key = cache_public_key(&client, "bench")?;
    let store = NixStore::in_dir(&work.join("store"));
    let r = Run {
        plan,
        work,
        bin_dir: &bin_dir,
        server: &server,
        client: &client,
        store: &store,
        public_key: &public_key,
    };
    let mut targets = Vec::new();

    let mut large_nar_push = None;
    if plan.runs("push") {
        let mut realistic = push_realistic(&r, &mut targets)?;
        large_nar_push = Some(realistic.push_mb_s);
        if plan.runs("pull") {
            pull(&r, &mut realistic, &mut targets)?;
        }
        if plan.runs("narinfo") {
            let nginx = realistic.nginx.as_ref().expect("started by pull");
            narinfo_load(&r, nginx, &realistic, &mut targets)?;
        }
    }
    if plan.runs("closure") {
        closure::section(&r, large_nar_push, &mut targets)?;
    }
    if plan.runs("log") {
        log::section(&r, &mut targets)?;
    }
    if plan.runs("memory") {
        memory(&r, &mut targets)?;
    }
    if plan.runs("scaling") {
        scaling::section(&r, &mut targets)?;
    }
    Ok(targets)
}

/// Runs a command; its stdout, or an error with its stderr.
pub fn output(c: &mut Command) -> Result<String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {:?}", c.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} {:?} failed: {}",
            c.get_program(),
            c.get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the provenix client; its stdout, or an error with its stderr.
pub fn provenix(client: &Client, args: &[&str]) -> Result<String> {
    output(client.command().args(args))
}

/// The HTTP status of a GET.
pub fn curl_status(url: &str) -> Result<u16> {
    let out =
        output(Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", url]))?;
    Ok(out.trim().parse()?)
}

/// Seconds a full download of `url` (discarded) takes; fails unless 200.
fn download_secs(url: &str) -> Result<f64> {
    let out = output(Command::new("curl").args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{time_total}",
        url,
    ]))?;
    let (code, secs) = out.trim().split_once(' ').context("curl output")?;
    anyhow::ensure!(code == "200", "GET {url} answered {code}");
    Ok(secs.parse()?)
}

/// `provenix push CACHE PATH` from the private store; the seconds it took.
fn push_secs(client: &Client, store: &NixStore, cache: &str, store_path: &str) -> Result<f64> {
    timed(store.isolate(&mut client.command()).args([
        "push",
        cache,
        store_path,
        "--store",
        &store.root(),
    ]))
}

fn timed(c: &mut Command) -> Result<f64> {
    let start = Instant::now();
    output(c)?;
    Ok(start.elapsed().as_secs_f64())
}

fn best_of(n: u32, mut f: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..n.max(1) {
        best = best.min(f()?);
    }
    Ok(best)
}

/// The best (shortest) of `n` runs of the baseline and of provenix, taken
/// in turns (baseline, provenix, baseline, ...): on a shared VM the speed of
/// the machine drifts over seconds, and back-to-back blocks of runs gave
/// whichever ran second a different machine.
fn best_of_interleaved(
    n: u32,
    mut base: impl FnMut() -> Result<f64>,
    mut ours: impl FnMut() -> Result<f64>,
) -> Result<(f64, f64)> {
    let (mut b, mut o) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..n.max(1) {
        b = b.min(base()?);
        o = o.min(ours()?);
    }
    Ok((b, o))
}

/// The middle value (the upper of the two middle ones for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ratio_target(
    targets: &mut Vec<Target>,
    what: &str,
    ours: f64,
    base: f64,
    at_least: f64,
    unit: &str,
) {
    let ratio = ours / base;
    targets.push(Target {
        what: format!("{what} >= {:.0}% of baseline", at_least * 100.0),
        figure: format!("{ours:.1} vs {base:.1} {unit} = {:.0}%", ratio * 100.0),
        holds: ratio >= at_least,
    });
}

fn print_machine() -> Result<()> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let version = |c: &str, arg: &str| {
        Command::new(c)
            .arg(arg)
            .output()
            .map(|o| {
                let text = [o.stdout, o.stderr].concat();
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default()
    };
    println!("# provenix-bench\n");
    println!(
        "Machine: {model}, {cores} cores, {mem_gib:.0} GiB RAM; {}",
        version("uname", "-sr")
    );
    println!(
        "Baselines: {}; {}; {}; {}\n",
        version("zstd", "--version"),
        version("nginx", "-v"),
        version("nix", "--version"),
        version("wrk", "-v"),
    );
    Ok(())
}

fn cache_public_key(client: &Client, cache: &str) -> Result<String> {
    let info = provenix(client, &["cache", "info", cache])?;
    info.lines()
        .find_map(|l| l.trim().strip_prefix("Public Key:"))
        .map(|k| k.trim().to_string())
        .context("no public key in `provenix cache info`")
}

/// The realistic path, pushed; and (once `pull` ran) nginx serving it.
struct Realistic {
    /// `provenix push` of it, MB/s.
    push_mb_s: f64,
    store_path: String,
    hash: String,
    nar_size: u64,
    nar_url: String,
    nginx: Option<nginx::Nginx>,
}

fn push_realistic(r: &Run, targets: &mut Vec<Target>) -> Result<Realistic> {
    let tree = match std::env::var_os("PROVENIX_BENCH_TREE") {
        Some(t) => PathBuf::from(t),
        None => {
            let sysroot = output(Command::new("rustc").args(["--print", "sysroot"]))?;
            PathBuf::from(sysroot.trim()).join("lib")
        }
    };
    let store_path = r.store.add_path(&tree, "rust-toolchain-lib");
    let nar_file = r.work.join("realistic.nar");
    let nar_size = nix_store::dump(r.store, &store_path, &nar_file)?;
    println!(
        "## Push\n\nA realistic path: `{}` (real ELF libraries and rlibs) as a {:.1} MB NAR.\n",
        tree.display(),
        nar_size as f64 / MB
    );
    // Baseline: zstd level 3 on both cores, same bytes, from the page cache.
    std::fs::read(&nar_file)?;
    let zstd = |threads: &str| {
        let nar_file = nar_file.clone();
        let threads = threads.to_string();
        move || {
            timed(
                Command::new("zstd")
                    .args(["-3", &threads, "-q", "-c"])
                    .arg(&nar_file)
                    .stdout(std::fs::File::create("/dev/null")?),
            )
        }
    };
    let zstd_all = nar_size as f64 / MB / best_of(r.plan.repeats, zstd("-T0"))?;
    let zstd_one = nar_size as f64 / MB / best_of(r.plan.repeats, zstd("-T1"))?;

    r.server.reset_peak_rss()?;
    let secs = push_secs(r.client, r.store, "bench", &store_path)?;
    let push = nar_size as f64 / MB / secs;
    let rss = r.server.peak_rss_mib()?;
    println!("| what | MB/s | server peak RSS |\n|---|---|---|");
    println!("| `zstd -3 -T0` (baseline, both cores) | {zstd_all:.1} | |");
    println!("| `zstd -3 -T1` (one core, for reference) | {zstd_one:.1} | |");
    println!("| `provenix push` (client and server on this machine) | {push:.1} | {rss:.1} MiB |");
    println!("| Attic, as reported in the issue (not measured here) | 13.8 | 134 MB |\n");
    ratio_target(targets, "push throughput", push, zstd_all, 0.6, "MB/s");

    let hash = store_path["/nix/store/".len()..][..32].to_string();
    std::fs::remove_file(&nar_file)?;
    Ok(Realistic {
        push_mb_s: push,
        store_path,
        hash,
        nar_size,
        nar_url: String::new(),
        nginx: None,
    })
}

fn pull(r: &Run, realistic: &mut Realistic, targets: &mut Vec<Target>) -> Result<()> {
    // nginx gets exactly the bytes provenix serves.
    let www = r.work.join("www");
    let cache_dir = www.join("bench");
    std::fs::create_dir_all(cache_dir.join("nar"))?;
    let get = |path: &str, to: &Path| -> Result<()> {
        output(
            Command::new("curl")
                .args(["-sf", "-o"])
                .arg(to)
                .arg(format!("{}/bench/{path}", r.server.url)),
        )?;
        Ok(())
    };
    get("nix-cache-info", &cache_dir.join("nix-cache-info"))?;
    let narinfo_file = cache_dir.join(format!("{}.narinfo", realistic.hash));
    get(&format!("{}.narinfo", realistic.hash), &narinfo_file)?;
    let narinfo = std::fs::read_to_string(&narinfo_file)?;
    let url = narinfo
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .context("no URL in the narinfo")?
        .to_string();
    get(&url, &cache_dir.join(&url))?;
    realistic.nar_url = url.clone();
    let nginx = nginx::Nginx::start(r.work, &www)?;

    let mb = realistic.nar_size as f64 / MB;
    let ours_url = format!("{}/bench/{url}", r.server.url);
    let base_url = format!("{}/bench/{url}", nginx.url);
    r.server.reset_peak_rss()?;
    let (base_secs, ours_secs) = best_of_interleaved(
        r.plan.repeats,
        || download_secs(&base_url),
        || download_secs(&ours_url),
    )?;
    let (base_http, ours_http) = (mb / base_secs, mb / ours_secs);
    let rss = r.server.peak_rss_mib()?;

    let target = r.work.join("pulled");
    let nix_pull = |base: &str| {
        let from = format!("{base}/bench");
        nix_store::pull_into_fresh(&from, &realistic.store_path, r.public_key, &target)
    };
    let (base_secs, ours_secs) = best_of_interleaved(
        r.plan.repeats,
        || nix_pull(&nginx.url),
        || nix_pull(&r.server.url),
    )?;
    let (base_nix, ours_nix) = (mb / base_secs, mb / ours_secs);
    println!(
        "## Pull\n\nThe same NAR ({mb:.1} MB, served zstd-compressed, {:.1} MB on the wire) from provenix and from nginx serving provenix's own narinfo and NAR bytes from disk. MB/s of NAR.\n",
        std::fs::metadata(cache_dir.join(&url))?.len() as f64 / MB
    );
    println!("| client | nginx (baseline) | provenix | ratio |\n|---|---|---|---|");
    println!(
        "| curl (plain HTTP) | {base_http:.1} | {ours_http:.1} | {:.0}% |",
        ours_http / base_http * 100.0
    );
    println!(
        "| `nix copy --from` (Nix {}) | {base_nix:.1} | {ours_nix:.1} | {:.0}% |",
        nix_version(),
        ours_nix / base_nix * 100.0
    );
    println!("\nServer peak RSS while serving it: {rss:.1} MiB.\n");
    ratio_target(
        targets,
        "NAR pull, plain HTTP",
        ours_http,
        base_http,
        0.8,
        "MB/s",
    );
    ratio_target(
        targets,
        "NAR pull, real Nix client",
        ours_nix,
        base_nix,
        0.8,
        "MB/s",
    );
    realistic.nginx = Some(nginx);
    Ok(())
}

fn nix_version() -> String {
    output(Command::new("nix").arg("--version"))
        .map(|v| v.split_whitespace().last().unwrap_or("?").to_string())
        .unwrap_or_else(|_| "?".into())
}

fn narinfo_load(
    r: &Run,
    nginx: &nginx::Nginx,
    realistic: &Realistic,
    targets: &mut Vec<Target>,
) -> Result<()> {
    // Revocation on: a path pushed by a key revoked since must answer 404.
    provenix(r.client, &["cache", "create", "bench-revoked", "--public"])?;
    let small = r.work.join("revoked-source");
    std::fs::write(&small, b"pushed by a key that is then revoked\n")?;
    let revoked_path = r.store.add_path(&small, "revoked");
    push_secs(r.client, r.store, "bench-revoked", &revoked_path)?;
    provenix(
        r.client,
        &[
            "revoke",
            "--cache",
            "bench-revoked",
            "--reason",
            "benchmark",
        ],
    )?;
    let revoked_url = format!(
        "{}/bench-revoked/{}.narinfo",
        r.server.url,
        &revoked_path[11..43]
    );
    anyhow::ensure!(
        curl_status(&revoked_url)? == 404,
        "a revoked path is still served"
    );

    println!("## narinfo\n\nOne path's narinfo over and over, signed per request by provenix (revoked keys in the database: a revoked path answers 404), against nginx serving the same narinfo file. wrk, keep-alive, {} runs of {} s each for nginx and provenix in turns; each figure is the median of its runs, and the last column lists every provenix run.\n", r.plan.repeats, r.plan.load_secs);
    println!("| clients | nginx req/s | provenix req/s | ratio | nginx p50 / p99 ms | provenix p50 / p99 ms | runs: ratio, provenix p99 ms |\n|---|---|---|---|---|---|---|");
    let path = format!("/bench/{}.narinfo", realistic.hash);
    for clients in [1, 8, 64] {
        let load = |base: &str| wrk::run(&format!("{base}{path}"), clients, r.plan.load_secs, None);
        let mut runs: Vec<(wrk::Load, wrk::Load)> = Vec::new();
        for _ in 0..r.plan.repeats.max(1) {
            let base = load(&nginx.url)?;
            let ours = load(&r.server.url)?;
            anyhow::ensure!(
                base.errors == 0 && ours.errors == 0,
                "errors under load: nginx {}, provenix {}",
                base.errors,
                ours.errors
            );
            runs.push((base, ours));
        }
        let base = wrk::Load::median(runs.iter().map(|r| r.0));
        let ours = wrk::Load::median(runs.iter().map(|r| r.1));
        let each: Vec<String> = runs
            .iter()
            .map(|(b, o)| {
                format!(
                    "{:.0}%, {:.2}",
                    o.requests_per_sec / b.requests_per_sec * 100.0,
                    o.p99_ms
                )
            })
            .collect();
        println!(
            "| {clients} | {:.0} | {:.0} | {:.0}% | {:.2} / {:.2} | {:.2} / {:.2} | {} |",
            base.requests_per_sec,
            ours.requests_per_sec,
            ours.requests_per_sec / base.requests_per_sec * 100.0,
            base.p50_ms,
            base.p99_ms,
            ours.p50_ms,
            ours.p99_ms,
            each.join("; ")
        );
        ratio_target(
            targets,
            &format!("narinfo req/s, {clients} clients"),
            ours.requests_per_sec,
            base.requests_per_sec,
            0.5,
            "req/s",
        );
        if clients == 64 {
            targets.push(Target {
                what: "narinfo p99 at 64 clients < 5 ms".into(),
                figure: format!("{:.2} ms", ours.p99_ms),
                holds: ours.p99_ms < 5.0,
            });
        }
    }
    println!();
    Ok(())
}

/// Writes `size` bytes that compress about 2:1 and share no chunk: each
/// 64 KiB block is half pseudo-random, half a repeated line naming it.
fn write_synthetic(file: &Path, size: u64) -> Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(file)?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ size;
    let mut block = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    let mut n = 0u64;
    while written < size {
        for word in block[..32 * 1024].chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let line = format!("block {n} of a synthetic NAR for provenix-bench\n");
        for (i, b) in block[32 * 1024..].iter_mut().enumerate() {
            *b = line.as_bytes()[i % line.len()];
        }
        let take = (size - written).min(block.len() as u64) as usize;
        out.write_all(&block[..take])?;
        written += take as u64;
        n += 1;
    }
    out.flush()?;
    Ok(())
}

fn memory(r: &Run, targets: &mut Vec<Target>) -> Result<()> {
    println!("## Memory\n\nServer peak RSS (VmHWM, reset before each step) pushing and pulling single-file NARs that compress about 2:1.\n");
    println!("| NAR | push MB/s | peak RSS, push | peak RSS, pull (curl) |\n|---|---|---|---|");
    let mut peaks = Vec::new();
    for &size in &r.plan.big_nars {
        let source = r.work.join("big");
        write_synthetic(&source, size)?;
        let name = format!("big-{}MiB", size / MIB);
        let store_path = r.store.add_path(&source, &name);
        std::fs::remove_file(&source)?;
        r.server.reset_peak_rss()?;
        let secs = push_secs(r.client, r.store, "bench", &store_path)?;
        let push_rss = r.server.peak_rss_mib()?;
        let narinfo = output(Command::new("curl").args([
            "-sf",
            &format!("{}/bench/{}.narinfo", r.server.url, &store_path[11..43]),
        ]))?;
        let url = narinfo
            .lines()
            .find_map(|l| l.strip_prefix("URL: "))
            .context("URL")?;
        r.server.reset_peak_rss()?;
        download_secs(&format!("{}/bench/{url}", r.server.url))?;
        let pull_rss = r.server.peak_rss_mib()?;
        nix_store::delete(r.store, &store_path)?;
        println!(
            "| {} MiB | {:.1} | {push_rss:.1} MiB | {pull_rss:.1} MiB |",
            size / MIB,
            size as f64 / MB / secs
        );
        peaks.push((size, push_rss.max(pull_rss)));
    }
    println!();
    let (largest, top) = *peaks.last().expect("sizes");
    let smallest = peaks[0].1;
    targets.push(Target {
        what: format!(
            "server peak RSS, push and pull of {} MiB < 64 MiB",
            largest / MIB
        ),
        figure: format!("{top:.1} MiB"),
        holds: peaks.iter().all(|p| p.1 < 64.0),
    });
    // Flat: growing the NAR 8x adds less than 8 MiB.
    targets.push(Target {
        what: format!(
            "peak RSS flat from {} to {} MiB (< +8 MiB)",
            peaks[0].0 / MIB,
            largest / MIB
        ),
        figure: format!("{smallest:.1} -> {top:.1} MiB"),
        holds: top - smallest < 8.0,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(only: Option<&str>) -> Plan {
        Plan {
            load_secs: 1,
            big_nars: vec![],
            path_counts: vec![],
            repeats: 1,
            only: only.map(str::to_string),
        }
    }

    #[test]
    fn only_runs_the_section_and_what_it_needs() {
        let ran = |only| {
            SECTIONS
                .iter()
                .filter(|s| plan(only).runs(s))
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(ran(None), SECTIONS);
        assert_eq!(ran(Some("memory")), ["memory"]);
        assert_eq!(ran(Some("scaling")), ["scaling"]);
        assert_eq!(ran(Some("push")), ["push"]);
        assert_eq!(ran(Some("pull")), ["push", "pull"]);
        assert_eq!(ran(Some("narinfo")), ["push", "pull", "narinfo"]);
    }
}
