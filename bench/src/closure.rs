//! The closure section (issue 18): a synthetic closure shaped like a real
//! one (hundreds of paths, most small, a few tens of MB; references between
//! them; content about as compressible as binaries), deterministic from a
//! seed, pushed, re-pushed and pulled beside same-run baselines: Nix's own
//! `nix copy --to file://` and that file cache served by nginx.

use anyhow::{Context, Result};
pub use provenix_tests::nix::Closure;
use provenix_tests::{Backend, Client, NixStore, ObjectStorage, TestServer};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::server::Provenixd;
use crate::{median, nginx, nix_store, output, provenix, Run, Target, MB};

/// Words the compressible part of a file is made of (a binary's strings,
/// symbol names and tables compress about this well).
const WORDS: [&str; 16] = [
    "libstdc++",
    "_ZN4core3fmt",
    "GLIBC_2.34",
    ".rodata",
    "malloc",
    "pthread",
    "/nix/store/",
    "memcpy",
    "__cxa_finalize",
    "std::vector",
    "utf8",
    "locale",
    "0x00000000",
    "DW_TAG",
    "R_X86_64",
    "errno",
];

/// A file's bytes: 4 KiB blocks, a third of them random, the rest words.
fn contents(rng: &mut rand::rngs::StdRng, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        let block = (size - out.len()).min(4096);
        if rng.gen_ratio(1, 3) {
            let start = out.len();
            out.resize(start + block, 0);
            rng.fill(&mut out[start..]);
        } else {
            let end = out.len() + block;
            while out.len() < end {
                let w = WORDS[rng.gen_range(0..WORDS.len())].as_bytes();
                let take = w.len().min(end - out.len());
                out.extend_from_slice(&w[..take]);
            }
        }
    }
    out
}

/// Sizes like a closure's: 70% 2-200 KB, 25% 200 KB-4 MB, 5% 4-40 MB
/// (log-uniform within each band).
fn size(rng: &mut rand::rngs::StdRng) -> usize {
    let (lo, hi): (f64, f64) = match rng.gen_range(0..100) {
        0..=69 => (2e3, 2e5),
        70..=94 => (2e5, 4e6),
        _ => (4e6, 4e7),
    };
    (lo * (hi / lo).powf(rng.gen::<f64>())) as usize
}

/// The closure of the bench: [`NixStore::add_closure`] with sizes and
/// contents shaped like a real closure's, deterministic from `seed`.
pub fn build(store: &NixStore, count: usize, seed: u64) -> Result<Closure> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    store.add_closure(
        count,
        &format!("provenix-bench-closure {seed}"),
        &mut rng,
        |rng, top| {
            let bytes = if top { 512 } else { size(rng) };
            contents(rng, bytes)
        },
    )
}

/// `provenix push CACHE TOP` (the whole closure); seconds.
pub fn push_closure(client: &Client, store: &NixStore, cache: &str, top: &str) -> Result<f64> {
    crate::timed(store.isolate(&mut client.command()).args([
        "push",
        cache,
        top,
        "--store",
        &store.root(),
    ]))
}

/// The cold push (best of the runs, each on a fresh server) and the Nix
/// pull (median) with the server on PostgreSQL and S3 (s3s-fs), the
/// scale-out configuration: None without a PostgreSQL to use.
fn scale_out(r: &Run, closure: &Closure, shm: &Path, work: &Path) -> Result<Option<(f64, f64)>> {
    if std::env::var_os("PROVENIX_TEST_POSTGRES_URL").is_none() {
        return Ok(None);
    }
    let mut push = f64::INFINITY;
    let mut kept = None;
    for _ in 0..r.plan.repeats.max(1) {
        let server = TestServer::start_on(Backend::Postgres, ObjectStorage::S3, "");
        let client = Client::with(r.bin_dir.join("provenix"), tempfile::tempdir_in(work)?);
        provenix(&client, &["login", "s3", &server.url, &server.root_token])?;
        provenix(&client, &["cache", "create", "closure", "--public"])?;
        push = push.min(push_closure(&client, r.store, "closure", &closure.top)?);
        kept = Some((server, client));
    }
    let (server, client) = kept.context("a server")?;
    let key = crate::cache_public_key(&client, "closure")?;
    let url = format!("{}/closure", server.url);
    let mut pulls = Vec::new();
    for _ in 0..(2 * r.plan.repeats - 1).max(1) {
        pulls.push(nix_store::pull_into_fresh(&url, &closure.top, &key, shm)?);
    }
    Ok(Some((push, median(pulls))))
}

/// `nix copy --to file://DIR?compression=zstd&secret-key=KEY`; seconds.
fn nix_copy_to_file(store: &NixStore, top: &str, dir: &Path, key: &Path) -> Result<f64> {
    nix_store::remove_store(dir)?;
    let to = format!(
        "file://{}?compression=zstd&secret-key={}",
        dir.display(),
        key.display()
    );
    crate::timed(
        store
            .nix("nix")
            .args(["copy", "--store", &store.root(), "--to", &to, top]),
    )
}

/// The SQLite database's size after a checkpoint (WAL folded in), bytes.
fn database_bytes(server: &Provenixd) -> Result<u64> {
    let db = server.database()?;
    output(
        Command::new("sqlite3")
            .arg(&db)
            .arg("PRAGMA wal_checkpoint(TRUNCATE);"),
    )?;
    Ok(std::fs::metadata(&db)?.len())
}

/// Rows of the tables a push writes history to: (uploads, closure
/// statements, vouches, ledger entries).
fn history_rows(server: &Provenixd) -> Result<[u64; 4]> {
    let db = server.database()?;
    let out = output(Command::new("sqlite3").arg(&db).arg(
        "SELECT (SELECT COUNT(*) FROM uploads) || ' ' || (SELECT COUNT(*) FROM closure_statements)
             || ' ' || (SELECT COUNT(*) FROM vouches) || ' ' || (SELECT COUNT(*) FROM ledger);",
    ))?;
    let n: Vec<u64> = out
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    n.try_into()
        .map_err(|_| anyhow::anyhow!("unexpected row counts: {out}"))
}

/// The section: cold push vs `nix copy --to file://`, re-push, and Nix's
/// pull from provenix vs from nginx serving Nix's own file cache.
/// `large_nar_push`: the push section's MB/s, when it ran.
pub fn section(r: &Run, large_nar_push: Option<f64>, targets: &mut Vec<Target>) -> Result<()> {
    let count = if r.plan.repeats > 1 { 600 } else { 80 };
    let began = Instant::now();
    let closure = build(r.store, count, 18)?;
    let mb = closure.nar_bytes as f64 / MB;
    println!(
        "## Closure\n\nA synthetic closure: {} paths, {mb:.0} MB of NAR (70% of paths 2-200 KB, 25% 0.2-4 MB, 5% 4-40 MB; a third of each file random, the rest words; up to four references each), made in {:.1} s. Each provenix run pushes to a fresh server (a cold cache); the baseline is `nix copy --to file://DIR?compression=zstd` from the same store.\n",
        closure.paths,
        began.elapsed().as_secs_f64()
    );
    let work = r.work.join("closure");
    std::fs::create_dir_all(&work)?;
    let (secret, public) = (work.join("nix-key.sec"), work.join("nix-key.pub"));
    output(
        Command::new("nix-store")
            .args(["--generate-binary-cache-key", "baseline-1"])
            .args([&secret, &public]),
    )?;
    let baseline_key = std::fs::read_to_string(&public)?.trim().to_string();
    let file_cache = work.join("www");

    // Cold pushes, baseline and provenix in turns; each provenix run on a
    // fresh server so that nothing is deduplicated against an earlier run.
    let mut servers = Vec::new();
    let (mut base_push, mut ours_push) = (f64::INFINITY, f64::INFINITY);
    for n in 0..r.plan.repeats.max(1) {
        base_push = base_push.min(nix_copy_to_file(
            r.store,
            &closure.top,
            &file_cache,
            &secret,
        )?);
        let server = Provenixd::start(r.bin_dir, &work.join(format!("server-{n}")))?;
        let client = Client::with(r.bin_dir.join("provenix"), tempfile::tempdir_in(&work)?);
        provenix(
            &client,
            &["login", "local", &server.url, &server.root_token],
        )?;
        provenix(&client, &["cache", "create", "closure", "--public"])?;
        server.reset_peak_rss()?;
        ours_push = ours_push.min(push_closure(&client, r.store, "closure", &closure.top)?);
        servers.push((server, client));
    }
    let (server, client) = servers.pop().context("a server")?;
    drop(servers);
    let push_rss = server.peak_rss_mib()?;

    // Re-push: everything is cached.
    let (rows, bytes) = (history_rows(&server)?, database_bytes(&server)?);
    server.reset_peak_rss()?;
    let repush = push_closure(&client, r.store, "closure", &closure.top)?;
    let after = history_rows(&server)?;
    let [uploads_added, statements_added, vouches_added, entries_added] =
        std::array::from_fn(|i| after[i] - rows[i]);
    // One get-missing-paths per thousand paths, then one statement each.
    let requests = closure.paths.div_ceil(1000) as u64 + statements_added;
    let grew = database_bytes(&server)?.saturating_sub(bytes);
    let repush_rss = server.peak_rss_mib()?;

    // Pulls into a store on tmpfs (Nix's own disk writes would hide the
    // difference), median of the runs, in turns.
    let nginx = nginx::Nginx::start(&work, &file_cache)?;
    let cache_key = crate::cache_public_key(&client, "closure")?;
    let shm = Path::new("/dev/shm").join(format!("provenix-bench-{}", std::process::id()));
    let pull = |from: &str, key: &str| nix_store::pull_into_fresh(from, &closure.top, key, &shm);
    let ours_url = format!("{}/closure", server.url);
    let (mut base_pulls, mut ours_pulls) = (Vec::new(), Vec::new());
    server.reset_peak_rss()?;
    for _ in 0..(2 * r.plan.repeats - 1).max(1) {
        base_pulls.push(pull(&nginx.url, &baseline_key)?);
        ours_pulls.push(pull(&ours_url, &cache_key)?);
    }
    let pull_rss = server.peak_rss_mib()?;
    let (base_pull, ours_pull) = (median(base_pulls), median(ours_pulls));
    let scaled_out = scale_out(r, &closure, &shm, &work)?;

    println!("| step | baseline | provenix | ratio |\n|---|---|---|---|");
    println!(
        "| cold push (best of {}) | `nix copy --to file://…?compression=zstd`: {base_push:.2} s ({:.0} MB/s) | {ours_push:.2} s ({:.0} MB/s) | {:.2}x faster |",
        r.plan.repeats,
        mb / base_push,
        mb / ours_push,
        base_push / ours_push
    );
    println!(
        "| Nix pull into tmpfs (median of {}) | nginx serving the file cache: {base_pull:.2} s | {ours_pull:.2} s | {:.0}% of nginx's rate |",
        (2 * r.plan.repeats - 1).max(1),
        base_pull / ours_pull * 100.0
    );
    println!(
        "| re-push of the cached closure | Attic, Cachix: one request, no rows | {repush:.2} s; {requests} requests; {uploads_added} upload rows, {statements_added} closure statement(s), {vouches_added} vouches, {entries_added} ledger entries; database +{grew} bytes ({:.0} per path) | |",
        grew as f64 / closure.paths as f64
    );
    match scaled_out {
        Some((push, pull)) => {
            println!(
                "| cold push, PostgreSQL + S3 (s3s-fs), best of {} | the same `nix copy`: {base_push:.2} s | {push:.2} s ({:.0} MB/s) | {:.2}x faster; {:.2}x SQLite + local disk's time |",
                r.plan.repeats,
                mb / push,
                base_push / push,
                push / ours_push
            );
            println!(
                "| Nix pull, PostgreSQL + S3 (s3s-fs), median of {} | nginx: {base_pull:.2} s | {pull:.2} s | {:.0}% of nginx's rate; {:.2}x SQLite + local disk's time |",
                (2 * r.plan.repeats - 1).max(1),
                base_pull / pull * 100.0,
                pull / ours_pull
            );
        }
        None => println!(
            "\n(PostgreSQL + S3 not measured: PROVENIX_TEST_POSTGRES_URL is unset; scripts/bench.sh sets it.)"
        ),
    }
    println!(
        "\nServer peak RSS: {push_rss:.1} MiB (cold push), {repush_rss:.1} MiB (re-push), {pull_rss:.1} MiB (pulls).\n"
    );
    targets.push(Target {
        what: "closure pull, real Nix client, >= 95% of nginx's rate".into(),
        figure: format!(
            "{ours_pull:.2} s vs {base_pull:.2} s = {:.0}%",
            base_pull / ours_pull * 100.0
        ),
        holds: base_pull / ours_pull >= 0.95,
    });
    targets.push(Target {
        what: "closure cold push >= 1.5x faster than nix copy --to file://".into(),
        figure: format!(
            "{ours_push:.2} s vs {base_push:.2} s = {:.2}x",
            base_push / ours_push
        ),
        holds: base_push / ours_push >= 1.5,
    });
    if let Some(large) = large_nar_push {
        crate::ratio_target(
            targets,
            "closure push rate vs the large NAR's",
            mb / ours_push,
            large,
            0.8,
            "MB/s",
        );
    }
    targets.push(Target {
        what: "re-push: at most 2 requests per 1,000 paths, under 0.3 s for the closure, under 100 bytes of database per path"
            .into(),
        figure: format!(
            "{requests} requests, {repush:.2} s, {:.0} bytes per path",
            grew as f64 / closure.paths as f64
        ),
        holds: requests as f64 <= 2.0 * (closure.paths as f64 / 1000.0).ceil()
            && repush < 0.3
            && (grew as f64 / closure.paths as f64) < 100.0,
    });
    let peak = push_rss.max(repush_rss).max(pull_rss);
    targets.push(Target {
        what: "server peak RSS through the closure section below 64 MiB".into(),
        figure: format!("{peak:.1} MiB"),
        holds: peak < 64.0,
    });
    nix_store::remove_store(&shm)?;
    Ok(())
}
