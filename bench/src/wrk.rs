//! HTTP load from wrk (Debian's package): requests/s and latency percentiles
//! at a given number of concurrent keep-alive connections.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx answers and socket errors: must be zero for a valid run.
    pub errors: u64,
}

impl Load {
    /// Each figure the median of the runs' (errors: the total).
    pub fn median(runs: impl Iterator<Item = Load> + Clone) -> Load {
        let of = |f: fn(&Load) -> f64| crate::median(runs.clone().map(|l| f(&l)).collect());
        Load {
            requests_per_sec: of(|l| l.requests_per_sec),
            p50_ms: of(|l| l.p50_ms),
            p99_ms: of(|l| l.p99_ms),
            errors: runs.map(|l| l.errors).sum(),
        }
    }
}

/// Runs wrk against `url` (or the paths a Lua `script` picks) for `secs`.
pub fn run(url: &str, connections: u32, secs: u32, script: Option<&Path>) -> Result<Load> {
    let threads = connections.min(2);
    let mut c = Command::new("wrk");
    c.args([
        "-t",
        &threads.to_string(),
        "-c",
        &connections.to_string(),
        "-d",
        &format!("{secs}s"),
        "--latency",
    ]);
    if let Some(s) = script {
        c.arg("-s").arg(s);
    }
    let out = crate::output(c.arg(url)).context("wrk")?;
    parse(&out)
}

pub fn parse(out: &str) -> Result<Load> {
    let mut load = Load {
        requests_per_sec: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        errors: 0,
    };
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["Requests/sec:", n] => load.requests_per_sec = n.parse()?,
            ["50%", t] => load.p50_ms = millis(t)?,
            ["99%", t] => load.p99_ms = millis(t)?,
            ["Non-2xx", "or", "3xx", "responses:", n] => load.errors += n.parse::<u64>()?,
            ["Socket", "errors:", ..] => {
                for n in line
                    .split(',')
                    .filter_map(|part| part.split_whitespace().last())
                {
                    load.errors += n.parse::<u64>().unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    if load.requests_per_sec.is_nan() || load.p99_ms.is_nan() {
        bail!("cannot read wrk's output:\n{out}");
    }
    Ok(load)
}

fn millis(t: &str) -> Result<f64> {
    let (number, factor) = if let Some(n) = t.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000.0)
    } else {
        bail!("unknown wrk time unit in {t:?}")
    };
    Ok(number.parse::<f64>()? * factor)
}

/// A Lua script making wrk request a random path of `paths` each time.
pub fn random_paths_script(file: &Path, prefix: &str, paths: &[String]) -> Result<()> {
    let list: Vec<String> = paths.iter().map(|p| format!("\"{p}\"")).collect();
    let lua = format!(
        "local paths = {{{}}}\nmath.randomseed(os.time())\nrequest = function()\n  return wrk.format(\"GET\", \"{prefix}\" .. paths[math.random(#paths)] .. \".narinfo\")\nend\n",
        list.join(",")
    );
    std::fs::write(file, lua)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output of wrk 4.1.0 (Debian 12).
    const SAMPLE: &str = "Running 5s test @ http://127.0.0.1:8080/bench/x.narinfo
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   410.91us  201.02us   8.20ms   93.10%
    Req/Sec     9.80k   503.16    10.71k    72.00%
  Latency Distribution
     50%  381.00us
     75%  430.00us
     90%  502.00us
     99%    1.21ms
  97512 requests in 5.00s, 60.12MB read
  Socket errors: connect 0, read 0, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:  19502.40
Transfer/sec:     12.02MB
";

    #[test]
    fn reads_wrk_output() {
        let l = parse(SAMPLE).unwrap();
        assert_eq!(l.requests_per_sec, 19502.40);
        assert!((l.p50_ms - 0.381).abs() < 1e-9);
        assert!((l.p99_ms - 1.21).abs() < 1e-9);
        assert_eq!(l.errors, 5);
    }
}
