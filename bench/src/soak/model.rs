//! What the soak itself knows happened, and so what each replica must
//! answer: the independent checker's side of the soak. It is built only
//! from the soak's own acknowledgements (a push command that exited 0, a
//! revocation that answered), never from what the server reports, and it
//! only grows (append-only), so a check can compare the expectation when a
//! request started with the one when it ended.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What a replica must answer for a path at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The narinfo and the byte-exact NAR.
    Present,
    /// 404.
    Absent,
    /// Either is right (a push in flight or failed, a revocation answering,
    /// a retention period that has run out).
    Either,
}

/// What a replica answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    Present,
    Absent,
}

/// How a check that did not hold went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Violation {
    /// An acknowledged, unrevoked path answered 404.
    Lost,
    /// A path whose every upload was revoked was served.
    ServedAfterRevocation,
    /// A path a retention GC took came back without a new push.
    Resurrected,
}

impl Violation {
    pub fn name(self) -> &'static str {
        match self {
            Violation::Lost => "lost",
            Violation::ServedAfterRevocation => "served-after-revocation",
            Violation::Resurrected => "resurrected",
        }
    }
}

/// A check's verdict from the expectations at its start and its end: a
/// violation only when both demanded what was not seen (a change between
/// them, such as a revocation answering meanwhile, allows either).
pub fn judge(before: Expect, after: Expect, seen: Observed) -> Option<Violation> {
    match seen {
        Observed::Absent if before == Expect::Present && after == Expect::Present => {
            Some(Violation::Lost)
        }
        Observed::Present if before == Expect::Absent && after == Expect::Absent => {
            Some(Violation::ServedAfterRevocation)
        }
        _ => None,
    }
}

pub type RunId = u64;

/// One CI run's push of a closure to a cache.
#[derive(Clone, Debug)]
pub struct Run {
    pub cache: String,
    /// The closure pushed: the run's new paths and what they reference.
    pub paths: Vec<String>,
    pub started: Instant,
    /// When the push command exited 0; None while in flight or if it failed.
    pub acked: Option<Instant>,
    pub revoke_started: Option<Instant>,
    pub revoke_acked: Option<Instant>,
}

/// A path as its builder's own Nix store records it.
#[derive(Clone, Debug)]
pub struct PathFacts {
    pub cache: String,
    /// `sha256:<nix base32>`, from the pushing store's database.
    pub nar_hash: String,
    pub nar_size: u64,
    /// Every run whose push included it, in start order.
    pub runs: Vec<RunId>,
}

/// The soak's record of its own pushes, revocations and pins.
#[derive(Default)]
pub struct Model {
    pub runs: HashMap<RunId, Run>,
    pub paths: HashMap<String, PathFacts>,
    /// The paths in the order first pushed, to pick from at random.
    pub order: Vec<String>,
    /// Caches whose GC deletes what is not pulled within this period.
    pub retention: HashMap<String, Duration>,
    /// Pinned paths, which no GC may take.
    pub pinned: Vec<String>,
    /// When a retention cache's path was first seen gone.
    gone: HashMap<String, Instant>,
}

impl Model {
    /// A push is starting: its paths may become visible from now on.
    pub fn push_started(&mut self, run: RunId, cache: &str, paths: &[(String, String, u64)]) {
        let now = Instant::now();
        for (path, nar_hash, nar_size) in paths {
            let order = &mut self.order;
            let facts = self.paths.entry(path.clone()).or_insert_with(|| {
                order.push(path.clone());
                PathFacts {
                    cache: cache.to_string(),
                    nar_hash: nar_hash.clone(),
                    nar_size: *nar_size,
                    runs: Vec::new(),
                }
            });
            facts.runs.push(run);
        }
        self.runs.insert(
            run,
            Run {
                cache: cache.to_string(),
                paths: paths.iter().map(|p| p.0.clone()).collect(),
                started: now,
                acked: None,
                revoke_started: None,
                revoke_acked: None,
            },
        );
    }

    pub fn push_acked(&mut self, run: RunId) {
        if let Some(r) = self.runs.get_mut(&run) {
            r.acked = Some(Instant::now());
        }
    }

    pub fn revoke_started(&mut self, run: RunId) {
        if let Some(r) = self.runs.get_mut(&run) {
            r.revoke_started = Some(Instant::now());
        }
    }

    pub fn revoke_acked(&mut self, run: RunId) {
        if let Some(r) = self.runs.get_mut(&run) {
            r.revoke_acked = Some(Instant::now());
        }
    }

    /// A check that started at `started` saw a retention cache's path gone
    /// at `at`. Only a path every push of which was acknowledged before the
    /// check began counts: until then it may simply not be there yet.
    pub fn saw_gone(&mut self, path: &str, started: Instant, at: Instant) {
        let Some(facts) = self.paths.get(path) else {
            return;
        };
        let settled = facts.runs.iter().all(|id| {
            self.runs
                .get(id)
                .and_then(|r| r.acked)
                .is_some_and(|t| t <= started)
        });
        if settled && self.retention.contains_key(&facts.cache) {
            self.gone.entry(path.to_string()).or_insert(at);
        }
    }

    /// What a replica must answer for `path` at `at`.
    pub fn expect(&self, path: &str, at: Instant) -> Expect {
        let Some(facts) = self.paths.get(path) else {
            return Expect::Absent;
        };
        if self.pinned.iter().any(|p| p == path) {
            return Expect::Present;
        }
        let runs = || facts.runs.iter().filter_map(|id| self.runs.get(id));
        // Pushed by a run that was acknowledged and is not being revoked.
        let vouched = runs()
            .any(|r| r.acked.is_some_and(|t| t <= at) && r.revoke_started.is_none_or(|t| t > at));
        if let Some(period) = self.retention.get(&facts.cache) {
            if let Some(gone) = self.gone.get(path) {
                // No run pushes a retention cache's path twice, so once
                // gone it stays gone.
                if *gone <= at {
                    return Expect::Absent;
                }
            }
            // GC may take it once unpulled for the period, counted from
            // before its upload committed: the push's start.
            let young = runs().any(|r| at < r.started + *period);
            return if vouched && young {
                Expect::Present
            } else {
                Expect::Either
            };
        }
        if vouched {
            return Expect::Present;
        }
        // Every run that could have uploaded it by then had its revocation
        // answered by then.
        let all_revoked = runs()
            .filter(|r| r.started <= at)
            .all(|r| r.revoke_acked.is_some_and(|t| t <= at));
        if all_revoked {
            Expect::Absent
        } else {
            Expect::Either
        }
    }

    /// A retention cache's path was seen again after being seen gone.
    pub fn resurrected(&self, path: &str, started: Instant) -> bool {
        self.gone.get(path).is_some_and(|gone| *gone < started)
    }

    /// Acknowledged runs of `cache` whose revocation has not started.
    pub fn live_runs(&self, cache: &str) -> Vec<RunId> {
        let mut runs: Vec<RunId> = self
            .runs
            .iter()
            .filter(|(_, r)| r.cache == cache && r.acked.is_some() && r.revoke_started.is_none())
            .map(|(id, _)| *id)
            .collect();
        runs.sort_unstable();
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> (String, String, u64) {
        (format!("/nix/store/{name}"), "sha256:x".into(), 1)
    }

    #[test]
    fn a_check_is_judged_by_its_start_and_end() {
        use Expect::*;
        let cases = [
            (Present, Present, Observed::Absent, Some(Violation::Lost)),
            (Present, Present, Observed::Present, None),
            (Present, Absent, Observed::Absent, None),
            (Present, Absent, Observed::Present, None),
            (
                Absent,
                Absent,
                Observed::Present,
                Some(Violation::ServedAfterRevocation),
            ),
            (Absent, Absent, Observed::Absent, None),
            (Either, Present, Observed::Absent, None),
            (Either, Either, Observed::Present, None),
        ];
        for (before, after, seen, verdict) in cases {
            assert_eq!(
                judge(before, after, seen),
                verdict,
                "{before:?} {after:?} {seen:?}"
            );
        }
    }

    #[test]
    fn a_path_is_due_from_its_ack_until_its_last_run_is_revoked() {
        let mut m = Model::default();
        let t0 = Instant::now();
        m.push_started(1, "main", &[p("a"), p("shared")]);
        assert_eq!(m.expect("/nix/store/a", Instant::now()), Expect::Either);
        m.push_acked(1);
        m.push_started(2, "main", &[p("b"), p("shared")]);
        m.push_acked(2);
        let acked = Instant::now();
        assert_eq!(m.expect("/nix/store/a", acked), Expect::Present);
        // Before any push of it began, it cannot be there.
        assert_eq!(m.expect("/nix/store/a", t0), Expect::Absent);
        m.revoke_started(1);
        assert_eq!(m.expect("/nix/store/a", Instant::now()), Expect::Either);
        m.revoke_acked(1);
        let revoked = Instant::now();
        assert_eq!(m.expect("/nix/store/a", revoked), Expect::Absent);
        assert_eq!(m.expect("/nix/store/a", acked), Expect::Present);
        // Run 2 vouches for the shared path still.
        assert_eq!(m.expect("/nix/store/shared", revoked), Expect::Present);
        assert_eq!(m.live_runs("main"), vec![2]);
        assert_eq!(m.expect("/nix/store/never", revoked), Expect::Absent);
    }

    #[test]
    fn a_failed_push_leaves_its_paths_either_until_revoked() {
        let mut m = Model::default();
        m.push_started(1, "main", &[p("a")]);
        assert_eq!(m.expect("/nix/store/a", Instant::now()), Expect::Either);
        m.push_started(2, "main", &[p("a")]);
        m.push_acked(2);
        m.revoke_started(2);
        m.revoke_acked(2);
        // Run 1 failed after perhaps uploading it; it was never revoked.
        assert_eq!(m.expect("/nix/store/a", Instant::now()), Expect::Either);
    }

    #[test]
    fn a_retention_cache_keeps_a_path_for_its_period_and_a_pin_for_ever() {
        let mut m = Model::default();
        m.retention
            .insert("scratch".into(), Duration::from_secs(60));
        m.push_started(1, "scratch", &[p("a"), p("pinned")]);
        m.push_acked(1);
        let now = Instant::now();
        assert_eq!(m.expect("/nix/store/a", now), Expect::Present);
        let later = now + Duration::from_secs(61);
        assert_eq!(m.expect("/nix/store/a", later), Expect::Either);
        m.pinned.push("/nix/store/pinned".into());
        assert_eq!(m.expect("/nix/store/pinned", later), Expect::Present);
        // Seen gone by a check that began before the push was acknowledged:
        // not gone, only not there yet.
        m.saw_gone("/nix/store/a", now - Duration::from_secs(1), later);
        assert!(!m.resurrected("/nix/store/a", later + Duration::from_secs(1)));
        m.saw_gone("/nix/store/a", later, later);
        assert_eq!(m.expect("/nix/store/a", later), Expect::Absent);
        assert!(m.resurrected("/nix/store/a", later + Duration::from_secs(1)));
        assert!(!m.resurrected("/nix/store/a", later));
        // Not a retention cache: a 404 there is never a GC's.
        m.push_started(2, "main", &[p("m")]);
        m.push_acked(2);
        m.saw_gone("/nix/store/m", later, later);
        assert!(!m.resurrected("/nix/store/m", later + Duration::from_secs(1)));
    }
}
