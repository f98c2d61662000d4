//! The independent checker: asks a replica for a path as Nix would
//! (narinfo, then the NAR it names), checks the bytes against the hash the
//! builder's own store recorded, and judges the answer by the model alone.

use provenix_provenance::narinfo::NarInfo;
use provenix_provenance::NarHash;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

use crate::model::{judge, Observed, Violation};
use crate::workload::World;

/// What one request pair found.
enum Answer {
    Seen(Observed),
    /// Served, but not what the builder built.
    Corrupt(String),
    /// Neither 200 nor 404 (or no answer): counted by kind.
    Failed(String),
}

pub struct Checker {
    world: World,
    http: reqwest::Client,
}

impl Checker {
    pub fn new(world: World) -> Checker {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        Checker { world, http }
    }

    /// Checks random known paths on alternate replicas until the soak stops.
    pub async fn run(self, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut n = seed as usize;
        while !self.world.stop.load(std::sync::atomic::Ordering::SeqCst) {
            let path = {
                let model = self.world.model.lock().unwrap();
                (!model.order.is_empty())
                    .then(|| model.order[rng.gen_range(0..model.order.len())].clone())
            };
            let Some(path) = path else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let replica = n % self.world.replicas.len();
            n += 1;
            self.check(&path, replica).await;
        }
    }

    /// One check of `path` on replica `replica`; returns what was seen.
    pub async fn check(&self, path: &str, replica: usize) -> Option<Observed> {
        let (cache, hash, size) = {
            let model = self.world.model.lock().unwrap();
            let f = &model.paths[path];
            (f.cache.clone(), f.nar_hash.clone(), f.nar_size)
        };
        let base = format!("{}/{cache}", self.world.replicas[replica]);
        let started = Instant::now();
        let before = self.world.model.lock().unwrap().expect(path, started);
        let answer = self.fetch(&base, path, &hash, size).await;
        let ended = Instant::now();
        let mut model = self.world.model.lock().unwrap();
        let after = model.expect(path, ended);
        let where_ = format!("{path} on replica {replica}");
        match answer {
            Answer::Seen(seen) => {
                self.world.stats.count("checks", 1);
                let verdict = if seen == Observed::Present && model.resurrected(path, started) {
                    Some(Violation::Resurrected)
                } else {
                    judge(before, after, seen)
                };
                if seen == Observed::Absent {
                    model.saw_gone(path, started, ended);
                }
                if let Some(v) = verdict {
                    self.world.stats.violation(
                        v.name(),
                        &format!("{where_}: expected {before:?} then {after:?}, seen {seen:?}"),
                    );
                }
                Some(seen)
            }
            Answer::Corrupt(what) => {
                self.world
                    .stats
                    .violation("corrupt", &format!("{where_}: {what}"));
                None
            }
            Answer::Failed(kind) => {
                self.world.stats.error("check", &kind, &where_);
                None
            }
        }
    }

    async fn fetch(&self, base: &str, path: &str, hash: &str, size: u64) -> Answer {
        let Some(part) = path.strip_prefix("/nix/store/").and_then(|b| b.get(..32)) else {
            return Answer::Corrupt(format!("not a store path: {path}"));
        };
        let started = Instant::now();
        let (status, body) = match self.get(&format!("{base}/{part}.narinfo")).await {
            Ok(r) => r,
            Err(kind) => return Answer::Failed(kind),
        };
        self.world.stats.done("narinfo", started.elapsed());
        match status {
            200 => {}
            404 => return Answer::Seen(Observed::Absent),
            s => return Answer::Failed(format!("narinfo {s}")),
        }
        let text = String::from_utf8_lossy(&body);
        let info = match NarInfo::parse(&text) {
            Ok(info) => info,
            Err(e) => return Answer::Corrupt(format!("narinfo does not parse: {e}")),
        };
        if info.store_path != path || info.nar_hash.to_nix_string() != hash || info.nar_size != size
        {
            return Answer::Corrupt(format!(
                "narinfo says {} {} {}, built as {hash} {size}",
                info.store_path,
                info.nar_hash.to_nix_string(),
                info.nar_size
            ));
        }
        let started = Instant::now();
        let (status, body) = match self.get(&format!("{base}/{}", info.url)).await {
            Ok(r) => r,
            Err(kind) => return Answer::Failed(kind),
        };
        self.world.stats.done("nar", started.elapsed());
        match status {
            200 => {}
            // Revoked or collected between the two requests.
            404 => return Answer::Seen(Observed::Absent),
            s => return Answer::Failed(format!("nar {s}")),
        }
        let nar = match info.compression.as_str() {
            "none" => body,
            "zstd" => match zstd::stream::decode_all(&body[..]) {
                Ok(nar) => nar,
                Err(e) => return Answer::Corrupt(format!("zstd: {e}")),
            },
            other => return Answer::Corrupt(format!("unexpected compression {other}")),
        };
        if nar.len() as u64 != size || NarHash::of(&nar).to_nix_string() != hash {
            return Answer::Corrupt(format!(
                "NAR of {} bytes does not hash to {hash}",
                nar.len()
            ));
        }
        self.world
            .stats
            .count("NAR bytes checked", nar.len() as u64);
        Answer::Seen(Observed::Present)
    }

    async fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String> {
        let resp = self
            .http
            .get(url)
            .bearer_auth(&self.world.root_token)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", kind_of(&e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("body cut short: {}", kind_of(&e)))?;
        Ok((status, body.to_vec()))
    }
}

fn kind_of(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "other"
    }
}
