//! The soak's figures: operations and their latencies, errors by kind,
//! violations (the checker's findings), and resident memory over time.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
struct Figures {
    counts: BTreeMap<String, u64>,
    latencies: BTreeMap<String, Vec<f64>>,
    /// (operation, kind) → count, with the first message seen.
    errors: BTreeMap<(String, String), (u64, String)>,
    violations: BTreeMap<String, Vec<String>>,
}

#[derive(Default)]
pub struct Stats {
    figures: Mutex<Figures>,
}

/// Latency summary of one operation, in milliseconds.
pub struct Summary {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Stats {
    pub fn done(&self, op: &str, took: Duration) {
        let mut f = self.figures.lock().unwrap();
        f.latencies
            .entry(op.to_string())
            .or_default()
            .push(took.as_secs_f64() * 1000.0);
    }

    pub fn count(&self, what: &str, n: u64) {
        *self
            .figures
            .lock()
            .unwrap()
            .counts
            .entry(what.to_string())
            .or_default() += n;
    }

    pub fn error(&self, op: &str, kind: &str, message: &str) {
        let mut f = self.figures.lock().unwrap();
        let e = f
            .errors
            .entry((op.to_string(), kind.to_string()))
            .or_insert((0, message.chars().take(400).collect()));
        e.0 += 1;
    }

    pub fn violation(&self, kind: &str, detail: &str) {
        eprintln!("VIOLATION {kind}: {detail}");
        self.figures
            .lock()
            .unwrap()
            .violations
            .entry(kind.to_string())
            .or_default()
            .push(detail.to_string());
    }

    pub fn summaries(&self) -> Vec<(String, Summary)> {
        let f = self.figures.lock().unwrap();
        f.latencies
            .iter()
            .map(|(op, v)| {
                let mut v = v.clone();
                v.sort_by(f64::total_cmp);
                let s = Summary {
                    count: v.len(),
                    p50: quantile(&v, 0.5),
                    p99: quantile(&v, 0.99),
                    max: v.last().copied().unwrap_or(0.0),
                };
                (op.clone(), s)
            })
            .collect()
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.figures.lock().unwrap().counts.clone()
    }

    pub fn errors(&self) -> Vec<(String, String, u64, String)> {
        let f = self.figures.lock().unwrap();
        f.errors
            .iter()
            .map(|((op, kind), (n, msg))| (op.clone(), kind.clone(), *n, msg.clone()))
            .collect()
    }

    pub fn violations(&self) -> BTreeMap<String, Vec<String>> {
        self.figures.lock().unwrap().violations.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
