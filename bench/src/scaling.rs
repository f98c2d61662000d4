//! The scaling section: a cache grown to a million synthetic paths
//! (`synthetic.rs`). At each size, narinfo under wrk's load, and the
//! operations that touch many rows, each timed while the probe
//! (`probe.rs`) measures narinfo latency during it: a GC pass (the
//! `garbage-collector-once` process an operator runs), a get-missing-paths
//! of 50,000 hashes, and a revocation that removes a tenth of the paths.

use anyhow::{ensure, Context, Result};
use std::process::Command;

use crate::probe::{during, Window};
use crate::{output, provenix, synthetic, wrk, Run, Target};

/// Hashes one get-missing-paths asks about (half present, half not).
const MISSING_PATHS_ASKED: usize = 50_000;
/// The narinfo p99 every operation must leave (issue 18).
const P99_TARGET_MS: f64 = 10.0;

struct Row {
    paths: u64,
    gc_secs: f64,
    gc: Window,
    missing_secs: f64,
    missing: Window,
    revoked: usize,
    revoke_secs: f64,
    revoke: Window,
}

pub fn section(r: &Run, targets: &mut Vec<Target>) -> Result<()> {
    let db = r.server.database()?;
    let cache = synthetic::cache_id(&db, "bench")?;
    let (base_key, _) = synthetic::upload_key(&db, cache, "synthetic-builder")?;
    println!("## narinfo as the cache grows\n\nSynthetic paths (a path row, a NAR row and an upload record each) added to the `bench` cache's SQLite database; wrk requests a random one of 1,000 sampled paths, 8 clients, {} s.\n", r.plan.load_secs);
    println!("| paths | req/s | p50 ms | p99 ms |\n|---|---|---|---|");
    let mut loads = Vec::new();
    let mut rows = Vec::new();
    for &count in &r.plan.path_counts {
        synthetic::grow_to(&db, cache, base_key, count)?;
        let sample = synthetic::sample(&db, cache, 1000)?;
        let script = r.work.join("paths.lua");
        wrk::random_paths_script(&script, "/bench/", &sample)?;
        let load = wrk::run(&r.server.url, 8, r.plan.load_secs, Some(&script))?;
        ensure!(
            load.errors == 0,
            "{} errors under load at {count} paths",
            load.errors
        );
        println!(
            "| {count} | {:.0} | {:.2} | {:.2} |",
            load.requests_per_sec, load.p50_ms, load.p99_ms
        );
        loads.push((count, load));
        rows.push(operations(r, &db, cache, base_key, count, &sample)?);
    }
    // The same at the largest size over many more distinct paths than the
    // server keeps signed bodies for (2,048): nearly every answer is signed
    // afresh, as when a substituter walks a large closure once.
    let sample = synthetic::sample(&db, cache, 20_000)?;
    let script = r.work.join("paths.lua");
    wrk::random_paths_script(&script, "/bench/", &sample)?;
    let cold = wrk::run(&r.server.url, 8, r.plan.load_secs, Some(&script))?;
    ensure!(cold.errors == 0, "{} errors under load", cold.errors);
    println!(
        "| {} (over {} distinct paths: signed afresh) | {:.0} | {:.2} | {:.2} |",
        r.plan.path_counts.last().context("counts")?,
        sample.len(),
        cold.requests_per_sec,
        cold.p50_ms,
        cold.p99_ms
    );
    let (first_n, first) = loads[0];
    let (last_n, last) = *loads.last().context("counts")?;
    targets.push(Target {
        what: format!("narinfo p50 at {last_n} paths <= 1.5x at {first_n}"),
        figure: format!(
            "{:.2} vs {:.2} ms = {:.2}x",
            last.p50_ms,
            first.p50_ms,
            last.p50_ms / first.p50_ms
        ),
        holds: last.p50_ms <= 1.5 * first.p50_ms,
    });

    println!("\n## Large operations as the cache grows\n\nEach timed while 4 clients fetch random narinfo (a 2 ms pause between one client's requests), and the narinfo latency of the requests that started during it. GC: `provenixd --mode garbage-collector-once`, a process of its own (it reaps the NARs the previous size's revocation left). get-missing-paths: {MISSING_PATHS_ASKED} hashes, half of them in the cache, a thousand a request as `provenix push` sends them. Revocation: `provenix revoke --key` of a key that alone uploaded a tenth of the paths.\n");
    println!("| paths | GC pass s (narinfo p50 / p99 / max ms) | get-missing-paths s (p50 / p99 / max) | revocation: paths removed, s (p50 / p99 / max) |\n|---|---|---|---|");
    for row in &rows {
        let w = |w: &Window| {
            format!(
                "{:.2} / {:.2} / {:.1}{}",
                w.p50_ms,
                w.p99_ms,
                w.max_ms,
                if w.errors > 0 {
                    format!(", {} errors", w.errors)
                } else {
                    String::new()
                }
            )
        };
        println!(
            "| {} | {:.2} ({}) | {:.2} ({}) | {}, {:.2} ({}) |",
            row.paths,
            row.gc_secs,
            w(&row.gc),
            row.missing_secs,
            w(&row.missing),
            row.revoked,
            row.revoke_secs,
            w(&row.revoke)
        );
    }
    println!();
    let largest = rows.last().context("counts")?;
    for (what, window) in [
        ("a GC pass", &largest.gc),
        ("a get-missing-paths of 50,000", &largest.missing),
        ("a revocation of a tenth of the paths", &largest.revoke),
    ] {
        targets.push(Target {
            what: format!(
                "narinfo p99 during {what} at {} paths < {P99_TARGET_MS} ms",
                largest.paths
            ),
            figure: format!("{:.2} ms over {} requests", window.p99_ms, window.requests),
            holds: window.p99_ms < P99_TARGET_MS && window.errors == 0,
        });
    }
    Ok(())
}

fn operations(
    r: &Run,
    db: &std::path::Path,
    cache: i64,
    base_key: i64,
    count: u64,
    sample: &[String],
) -> Result<Row> {
    let base = format!("{}/bench", r.server.url);

    let (_, gc_secs, gc) = during(&base, sample, || {
        output(
            Command::new(r.bin_dir.join("provenixd"))
                .args(["--mode", "garbage-collector-once"])
                .env("HOME", &r.server.home)
                .env("PROVENIX_LOG", "warn"),
        )
    })?;

    // Half present (the sample, repeated), half made up.
    let mut hashes: Vec<String> = sample
        .iter()
        .cycle()
        .take(MISSING_PATHS_ASKED / 2)
        .cloned()
        .collect();
    hashes.extend(
        (0..MISSING_PATHS_ASKED / 2)
            .map(|i| format!("{:0>32}", format!("{i:x}").replace('e', "z"))),
    );
    // As `provenix push` asks: a thousand hashes a request, on one
    // keep-alive connection (curl's config: one block per request).
    let mut config = String::new();
    let answers: Vec<_> = (0..hashes.len().div_ceil(1000))
        .map(|i| r.work.join(format!("missing-paths-{i}.out")))
        .collect();
    for (i, batch) in hashes.chunks(1000).enumerate() {
        let body = r.work.join(format!("missing-paths-{i}.json"));
        std::fs::write(
            &body,
            serde_json::json!({ "cache": "bench", "store_path_hashes": batch }).to_string(),
        )?;
        if i > 0 {
            config.push_str("next\n");
        }
        config.push_str(&format!(
            "url = \"{}/_api/v1/get-missing-paths\"\nheader = \"Authorization: Bearer {}\"\nheader = \"Content-Type: application/json\"\ndata-binary = \"@{}\"\noutput = \"{}\"\nfail\nsilent\n",
            r.server.url,
            r.server.root_token,
            body.display(),
            answers[i].display()
        ));
    }
    let config_file = r.work.join("missing-paths.curl");
    std::fs::write(&config_file, config)?;
    let (_, missing_secs, missing) = during(&base, sample, || {
        output(Command::new("curl").arg("-K").arg(&config_file))
    })?;
    let mut said_missing = 0;
    for answer in &answers {
        let answer: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(answer)?)?;
        said_missing += answer["missing_paths"].as_array().map_or(0, Vec::len);
    }
    ensure!(
        said_missing == MISSING_PATHS_ASKED / 2,
        "get-missing-paths said {said_missing} of {MISSING_PATHS_ASKED} are missing"
    );

    let key = synthetic::hand_over(db, cache, base_key, count / 10, &format!("revoked-{count}"))?;
    let (out, revoke_secs, revoke) = during(&base, sample, || {
        provenix(
            r.client,
            &["revoke", "--key", &key, "--reason", "bench", "--json"],
        )
    })?;
    let answer: serde_json::Value = serde_json::from_str(&out)?;
    let revoked = answer["paths"].as_array().map_or(0, Vec::len);
    ensure!(
        revoked as u64 == count / 10,
        "the revocation removed {revoked} paths, not {}",
        count / 10
    );
    Ok(Row {
        paths: count,
        gc_secs,
        gc,
        missing_secs,
        missing,
        revoked,
        revoke_secs,
        revoke,
    })
}
