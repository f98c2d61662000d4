//! The load: CI runs pushing closures through the real client, a revoker
//! taking whole runs out, and Nix pulling closures with the real Nix
//! client. Each writes what it was told (exit status) into the model and
//! its figures into the stats; none asks the server what happened.

use provenix_tests::oidc::OidcIssuer;
use provenix_tests::{random_bytes, Client, NixStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::model::{Expect, Model, RunId};
use crate::stats::Stats;

/// What every worker shares.
#[derive(Clone)]
pub struct World {
    pub model: Arc<Mutex<Model>>,
    pub stats: Arc<Stats>,
    pub stop: Arc<AtomicBool>,
    pub issuer: Arc<OidcIssuer>,
    /// Both replicas' base URLs; work alternates between them.
    pub replicas: Vec<String>,
    pub root_token: String,
}

impl World {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d`, waking early when the soak stops.
    fn pause(&self, d: Duration) {
        let end = Instant::now() + d;
        while !self.stopping() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100).min(end - Instant::now()));
        }
    }
}

/// Sizes like a closure's: 70% 2-200 KB, 25% 200 KB-2 MB, 5% 2-16 MB.
fn size(rng: &mut StdRng) -> usize {
    let (lo, hi): (f64, f64) = match rng.gen_range(0..100) {
        0..=69 => (2e3, 2e5),
        70..=94 => (2e5, 2e6),
        _ => (2e6, 1.6e7),
    };
    (lo * (hi / lo).powf(rng.gen::<f64>())) as usize
}

/// One CI job after another, each a run of its own (its own run id, so its
/// own OIDC token and key) pushing a closure of new paths to `cache`.
pub struct Pusher {
    pub world: World,
    pub cache: String,
    /// Run ids are `first_run`, `first_run + 1`, ...
    pub first_run: RunId,
    /// Whether a run's closure also takes paths earlier runs pushed (as a
    /// build's dependencies are), which re-pushes revoked ones.
    pub reuse_earlier: bool,
}

impl Pusher {
    pub fn run(self) {
        let store = NixStore::new();
        let mut rng = StdRng::seed_from_u64(self.first_run);
        let mut earlier: Vec<String> = Vec::new();
        let mut run = self.first_run;
        while !self.world.stopping() {
            let replica = &self.world.replicas[(run % 2) as usize];
            let new = self.push_run(&store, &mut rng, run, replica, &earlier);
            earlier.extend(new);
            run += 1;
        }
    }

    /// Makes the run's paths, pushes them, and returns its new leaves.
    pub fn push_run(
        &self,
        store: &NixStore,
        rng: &mut StdRng,
        run: RunId,
        replica: &str,
        earlier: &[String],
    ) -> Vec<String> {
        let leaves: Vec<String> = (0..rng.gen_range(4..=10))
            .map(|i| {
                let blob = random_bytes(rng.gen(), size(rng));
                store.add_input_addressed(&format!("soak-{run}-{i}"), &[("blob", &blob)], &[])
            })
            .collect();
        let mut refs: Vec<&str> = leaves.iter().map(String::as_str).collect();
        if self.reuse_earlier && !earlier.is_empty() {
            for _ in 0..rng.gen_range(0..=3) {
                refs.push(&earlier[rng.gen_range(0..earlier.len())]);
            }
            refs.sort_unstable();
            refs.dedup();
        }
        let manifest = refs.join("\n");
        let top = store.add_input_addressed(
            &format!("soak-{run}-top"),
            &[("manifest", manifest.as_bytes())],
            &refs,
        );
        let mut closure: Vec<String> = refs.iter().map(|r| r.to_string()).collect();
        closure.push(top.clone());
        let facts = nar_facts(store, &closure);
        self.world
            .model
            .lock()
            .unwrap()
            .push_started(run, &self.cache, &facts);

        let client = Client::new();
        client.ok(&["login", "ci", replica]);
        let job = self.world.issuer.job_request_url(json!({
            "run_id": run.to_string(),
            "run_number": (run % 100_000).to_string(),
            "sha": hex::encode(rng.gen::<[u8; 20]>()),
        }));
        let env = [
            ("ACTIONS_ID_TOKEN_REQUEST_URL", job.as_str()),
            (
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                self.world.issuer.request_token.as_str(),
            ),
        ];
        let root = store.root();
        let started = Instant::now();
        let (ok, _, err) = client.run_with(&["push", &self.cache, &top, "--store", &root], &env);
        let took = started.elapsed();
        if ok {
            self.world.model.lock().unwrap().push_acked(run);
            let bytes = facts.iter().map(|f| f.2).sum::<u64>();
            self.world.stats.done("push", took);
            self.world.stats.count("pushed paths", facts.len() as u64);
            self.world.stats.count("pushed NAR bytes", bytes);
        } else {
            self.world.stats.error("push", &error_kind(&err), &err);
        }
        leaves
    }
}

/// `(path, sha256:<base32>, size)` of each path, from the store's own
/// database (what Nix itself recorded when the path was added).
fn nar_facts(store: &NixStore, paths: &[String]) -> Vec<(String, String, u64)> {
    let query = |what: &str| -> Vec<String> {
        let out = store
            .nix("nix-store")
            .args(["--store", &store.root(), "--query", what])
            .args(paths)
            .output()
            .expect("nix-store --query");
        assert!(out.status.success(), "nix-store --query {what}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let (hashes, sizes) = (query("--hash"), query("--size"));
    paths
        .iter()
        .zip(hashes)
        .zip(sizes)
        .map(|((p, h), s)| (p.clone(), h, s.parse().expect("a size")))
        .collect()
}

/// The error code a failed command printed (`... (code)`), else its
/// first line.
pub fn error_kind(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error"))
        .or_else(|| stderr.lines().next())
        .unwrap_or("no output");
    let line: String = line.chars().take(100).collect();
    line.trim().to_string()
}

/// Every `every`, revokes one acknowledged run of `cache` (all keys issued
/// for its run id), through either replica.
pub fn revoker(world: World, cache: &str, every: Duration) {
    let admins: Vec<Client> = world
        .replicas
        .iter()
        .map(|url| {
            let c = Client::new();
            c.ok(&["login", "admin", url, &world.root_token]);
            c
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(7);
    let mut n = 0usize;
    loop {
        world.pause(every);
        if world.stopping() {
            return;
        }
        let live = world.model.lock().unwrap().live_runs(cache);
        if live.len() < 2 {
            continue;
        }
        let run = live[rng.gen_range(0..live.len())];
        world.model.lock().unwrap().revoke_started(run);
        let started = Instant::now();
        let admin = &admins[n % admins.len()];
        n += 1;
        let (ok, _, err) = admin.run(&[
            "revoke",
            "--cache",
            cache,
            "--run-id",
            &run.to_string(),
            "--reason",
            "soak: a compromised run",
        ]);
        if ok {
            world.model.lock().unwrap().revoke_acked(run);
            world.stats.done("revoke", started.elapsed());
        } else {
            world.stats.error("revoke", &error_kind(&err), &err);
        }
    }
}

/// Nix itself pulling a whole acknowledged closure into a fresh store,
/// again and again: it must succeed with Nix's own hashes matching the
/// builder's whenever the closure was due before and after.
pub fn nix_puller(world: World, cache: &str, key: &str, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = seed as usize;
    while !world.stopping() {
        let picked = {
            let model = world.model.lock().unwrap();
            let live = model.live_runs(cache);
            (!live.is_empty()).then(|| {
                let run = &model.runs[&live[rng.gen_range(0..live.len())]];
                run.paths.clone()
            })
        };
        let Some(paths) = picked else {
            world.pause(Duration::from_secs(1));
            continue;
        };
        let top = paths.last().unwrap().clone();
        let url = &world.replicas[n % world.replicas.len()];
        n += 1;
        let due = |at| {
            let model = world.model.lock().unwrap();
            paths.iter().all(|p| model.expect(p, at) == Expect::Present)
        };
        let started = Instant::now();
        let due_before = due(started);
        let dst = NixStore::new();
        let host = provenix_tests::host_of(url);
        let (ok, err) = dst.copy_from(
            &format!("{url}/{cache}"),
            &top,
            &[key],
            Some((&host, &world.root_token)),
        );
        let took = started.elapsed();
        let due_after = due(Instant::now());
        if ok {
            world.stats.done("nix pull", took);
            let got = nar_facts(&dst, &paths);
            let model = world.model.lock().unwrap();
            for (path, hash, size) in got {
                let facts = &model.paths[&path];
                if facts.nar_hash != hash || facts.nar_size != size {
                    world.stats.violation(
                        "corrupt",
                        &format!(
                            "nix pulled {path} as {hash} {size}, built as {} {}",
                            facts.nar_hash, facts.nar_size
                        ),
                    );
                }
            }
        } else if due_before && due_after {
            world
                .stats
                .violation("nix-pull-failed", &format!("{top} from {url}: {err}"));
        } else {
            world.stats.count("nix pulls raced by a revocation", 1);
        }
    }
}
