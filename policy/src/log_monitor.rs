//! What `provenix log monitor` decides about each entry of a cache's
//! transparency log: whose it is, whether the watcher expected it, and
//! whether it is anomalous in itself. Pure: the client reads and verifies
//! the entries, this module only judges them, one at a time, in log order.
//!
//! An upload names its key by id only; the key's entry (logged before any
//! use of it) names the identity. So the monitor remembers the keys it has
//! seen, each until an hour past its expiry (entries are stamped when they
//! are committed, and a key is refused once it has expired), which keeps
//! what it holds bounded by the keys alive at one time.

use provenix_provenance::tlog::entry::Entry;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

use crate::cache_name::pattern_matches;

/// How long past its expiry a key stays known: entries are stamped at
/// commit, a little after the key was checked.
pub const KEY_GRACE_SECS: i64 = 3600;

/// Whom the watcher expects. An identity matches if it matches any one of
/// the repositories or identity globs.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// `OWNER/REPO`, or the numeric repository id (a rename cannot move it).
    pub repositories: Vec<String>,
    /// Globs (`*`) over a key's subject, e.g. `repo:acme/*:ref:refs/heads/main`.
    pub identities: Vec<String>,
}

impl Watch {
    pub fn is_empty(&self) -> bool {
        self.repositories.is_empty() && self.identities.is_empty()
    }

    /// Whether `who` is one of the watched identities; with nothing
    /// watched, everyone is.
    pub fn matches(&self, who: &Identity) -> bool {
        if self.is_empty() {
            return true;
        }
        let repository = self.repositories.iter().any(|r| {
            let by_id = !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit());
            let theirs = if by_id {
                &who.repository_id
            } else {
                &who.repository
            };
            theirs.as_deref() == Some(r.as_str())
        });
        repository
            || self
                .identities
                .iter()
                .any(|g| pattern_matches(g, &who.subject))
    }

    /// Whether a revocation's selector names a watched identity: its
    /// repository, a subject a glob matches, or a watched key.
    fn names(&self, selector: &Value, keys: &BTreeMap<String, Identity>) -> bool {
        let field = |k: &str| selector.get(k).and_then(Value::as_str);
        if let Some(r) = field("repository") {
            if self.repositories.iter().any(|w| w == r) {
                return true;
            }
        }
        if let Some(s) = field("subject") {
            if self.identities.iter().any(|g| pattern_matches(g, s)) {
                return true;
            }
        }
        field("key")
            .and_then(|k| keys.get(k))
            .is_some_and(|who| self.matches(who))
    }
}

/// Who a key was certified for, as its log entry says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_id: Option<String>,
    /// Unix seconds.
    pub not_after: i64,
}

/// Where a monitor stopped, kept between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MonitorState {
    /// Entries read so far: the next one to read.
    pub next: u64,
    /// Keys seen and not yet long expired, by key id.
    #[serde(default)]
    pub keys: BTreeMap<String, Identity>,
    /// The SHA-256 of the CA certificate the log last named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

/// One entry the watcher is told about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub index: u64,
    pub time: i64,
    pub kind: String,
    /// The key's identity (keys, uploads, divergences, closure
    /// statements); none for a revocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The store path of an upload or divergence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_path: Option<String>,
    /// A revocation's selector, actor, reason and how many paths it removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<Value>,
    /// Whether the watched identities include it.
    pub expected: bool,
}

/// Something wrong with the log itself, whoever is watched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    pub index: u64,
    pub problem: String,
}

/// What one entry comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    Report(Report),
    Anomaly(Anomaly),
    /// A kind the monitor does not report (pin changes, deletions), or
    /// an entry the watch does not select.
    Quiet,
}

/// Which entries a run reports: those of the watched identities, or (for
/// `--unexpected`) those of anyone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporting {
    Expected,
    Unexpected,
}

/// Judges entry `state.next` (its bytes) of the log of `cache`, and moves
/// the state past it. `from_start` says whether this monitor has read the
/// log from its first entry, so that a key it never saw is an anomaly
/// rather than one logged before it started.
pub fn judge(
    state: &mut MonitorState,
    cache: &str,
    bytes: &[u8],
    watch: &Watch,
    reporting: Reporting,
    from_start: bool,
) -> Judgement {
    let index = state.next;
    state.next += 1;
    let anomaly = |problem: String| Judgement::Anomaly(Anomaly { index, problem });
    let entry = match Entry::decode(bytes) {
        Ok(e) => e,
        Err(e) => return anomaly(format!("not a provenix log entry: {e}")),
    };
    if entry.header.cache != cache {
        return anomaly(format!(
            "an entry of cache {:?} in the log of {cache:?}",
            entry.header.cache
        ));
    }
    let time = entry.header.time;
    if index.is_multiple_of(256) {
        state
            .keys
            .retain(|_, who| who.not_after + KEY_GRACE_SECS >= time);
    }
    let text = |k: &str| {
        entry
            .header
            .asserted
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let report = |identity: Option<Identity>, expected: bool| Report {
        index,
        time,
        kind: entry.header.kind.clone(),
        identity,
        key_id: text("key_id"),
        store_path: text("store_path"),
        revocation: None,
        expected,
    };
    let decide = |r: Report| {
        let wanted = match reporting {
            Reporting::Expected => r.expected,
            Reporting::Unexpected => !r.expected,
        };
        if wanted {
            Judgement::Report(r)
        } else {
            Judgement::Quiet
        }
    };
    match entry.header.kind.as_str() {
        "upload-key" => {
            let (Some(key_id), Some(issuer), Some(subject)) =
                (text("key_id"), text("issuer"), text("subject"))
            else {
                return anomaly("a key entry without its key id, issuer or subject".into());
            };
            let claims = entry.header.asserted.get("claims");
            let claim = |k: &str| {
                claims.and_then(|c| c.get(k)).and_then(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
            };
            let who = Identity {
                issuer,
                subject,
                repository: claim("repository"),
                repository_id: claim("repository_id"),
                not_after: entry
                    .header
                    .asserted
                    .get("not_after")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
            };
            if state.keys.insert(key_id.clone(), who.clone()).is_some() {
                return anomaly(format!("key {key_id} certified a second time"));
            }
            let expected = watch.matches(&who);
            decide(report(Some(who), expected))
        }
        "upload" | "divergence" | "closure-statement" => {
            let Some(key_id) = text("key_id") else {
                return anomaly("a signed entry without its key id".into());
            };
            match state.keys.get(&key_id) {
                Some(who) if time > who.not_after + KEY_GRACE_SECS => anomaly(format!(
                    "signed by key {key_id} an hour or more after it expired"
                )),
                Some(who) => {
                    let expected = watch.matches(who);
                    decide(report(Some(who.clone()), expected))
                }
                None if from_start => anomaly(format!(
                    "signed by key {key_id}, which the log never certified"
                )),
                // A key from before this monitor started: nobody is known
                // to have expected it.
                None => decide(report(None, false)),
            }
        }
        "revocation" => {
            let selector = entry
                .header
                .asserted
                .get("selector")
                .cloned()
                .unwrap_or(Value::Null);
            let expected = watch.is_empty() || watch.names(&selector, &state.keys);
            let mut r = report(None, expected);
            r.revocation = Some(serde_json::json!({
                "selector": selector,
                "actor": entry.header.asserted.get("actor"),
                "reason": entry.header.asserted.get("reason"),
                "removed_paths": entry.header.asserted.get("removed_paths"),
            }));
            decide(r)
        }
        // The first is every log's; another means the server's CA changed,
        // which nothing in provenix does: someone replaced it.
        "ca-certificate" => {
            let Some(new) = text("sha256") else {
                return anomaly("a CA certificate entry without its sha256".into());
            };
            match state.ca.replace(new.clone()) {
                Some(old) if old != new => anomaly(format!(
                    "a new CA certificate (sha256 {new}) after the one logged before (sha256 {old}): the server's CA was replaced"
                )),
                _ => Judgement::Quiet,
            }
        }
        _ => Judgement::Quiet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use provenix_provenance::tlog::entry::EntryHeader;
    use serde_json::json;

    fn entry(kind: &str, cache: &str, time: i64, asserted: Value) -> Vec<u8> {
        let asserted = asserted
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Entry::new(
            EntryHeader {
                kind: kind.into(),
                cache: cache.into(),
                time,
                asserted,
                body_sha256: None,
                asserted_sha256: None,
            },
            b"body".to_vec(),
        )
        .encode()
    }

    fn key(id: &str, repo: &str, repo_id: u64, not_after: i64) -> Vec<u8> {
        entry(
            "upload-key",
            "main",
            not_after - 900,
            json!({
                "key_id": id,
                "issuer": "https://token.actions.githubusercontent.com",
                "subject": format!("repo:{repo}:ref:refs/heads/main"),
                "claims": {"repository": repo, "repository_id": repo_id},
                "not_after": not_after,
            }),
        )
    }

    fn ca(sha256: &str, time: i64) -> Vec<u8> {
        entry("ca-certificate", "main", time, json!({ "sha256": sha256 }))
    }

    fn upload(key_id: &str, time: i64) -> Vec<u8> {
        entry(
            "upload",
            "main",
            time,
            json!({"key_id": key_id, "store_path": "/nix/store/x-hello"}),
        )
    }

    fn watch_repo(r: &str) -> Watch {
        Watch {
            repositories: vec![r.into()],
            ..Default::default()
        }
    }

    /// (entries, watch, reporting, from_start) → what each entry comes to:
    /// 'R' reported, 'A' anomaly, '.' quiet.
    fn run(entries: &[Vec<u8>], watch: &Watch, reporting: Reporting, from_start: bool) -> String {
        let mut state = MonitorState::default();
        entries
            .iter()
            .map(
                |e| match judge(&mut state, "main", e, watch, reporting, from_start) {
                    Judgement::Report(_) => 'R',
                    Judgement::Anomaly(_) => 'A',
                    Judgement::Quiet => '.',
                },
            )
            .collect()
    }

    #[test]
    fn entries_are_reported_by_whose_key_signed_them() {
        let t = 2_000_000_000;
        let log = [
            key("k1", "acme/app", 42, t),
            upload("k1", t - 800),
            key("k2", "mallory/evil", 66, t),
            upload("k2", t - 700),
            entry(
                "revocation",
                "main",
                t - 600,
                json!({"selector": {"repository": "acme/app"}, "actor": "admin", "reason": "r"}),
            ),
            entry(
                "revocation",
                "main",
                t - 500,
                json!({"selector": {"key": "k2"}, "actor": "admin", "reason": "r"}),
            ),
            entry("pin-change", "main", t - 400, json!({})),
            entry("path-deletion", "main", t - 300, json!({})),
        ];
        let cases = [
            (watch_repo("acme/app"), Reporting::Expected, "RR..R..."),
            (watch_repo("42"), Reporting::Expected, "RR......"),
            (watch_repo("acme/app"), Reporting::Unexpected, "..RR.R.."),
            (
                Watch {
                    identities: vec!["repo:mallory/*".into()],
                    ..Default::default()
                },
                Reporting::Expected,
                "..RR.R..",
            ),
            (Watch::default(), Reporting::Expected, "RRRRRR.."),
            (Watch::default(), Reporting::Unexpected, "........"),
        ];
        for (watch, reporting, want) in cases {
            assert_eq!(
                run(&log, &watch, reporting, true),
                want,
                "{watch:?} {reporting:?}"
            );
        }
    }

    #[test]
    fn anomalies_are_reported_whoever_is_watched() {
        let t = 2_000_000_000;
        let w = watch_repo("acme/app");
        for (log, from_start, want) in [
            // A key the log never certified.
            (vec![upload("k9", t)], true, "A"),
            // ... unless the monitor started after it was logged.
            (vec![upload("k9", t)], false, "."),
            (vec![upload("k9", t)], false, "R"),
            // A key used long after it expired.
            (
                vec![key("k1", "acme/app", 42, t), upload("k1", t + 2 * 3600)],
                true,
                "RA",
            ),
            // A key certified twice.
            (
                vec![key("k1", "acme/app", 42, t), key("k1", "acme/app", 42, t)],
                true,
                "RA",
            ),
            // Another cache's entry, and bytes that are no entry.
            (
                vec![entry("upload", "other", t, json!({"key_id": "k1"}))],
                true,
                "A",
            ),
            (vec![b"garbage".to_vec()], true, "A"),
            // The CA logged once, or again unchanged: quiet; a second CA:
            // the server's CA was replaced.
            (vec![ca("aa", t), ca("aa", t)], true, ".."),
            (vec![ca("aa", t), ca("bb", t)], true, ".A"),
            (
                vec![entry("ca-certificate", "main", t, json!({}))],
                true,
                "A",
            ),
        ] {
            let reporting = if want == "R" {
                Reporting::Unexpected
            } else {
                Reporting::Expected
            };
            assert_eq!(run(&log, &w, reporting, from_start), want);
        }
    }

    #[test]
    fn keys_are_forgotten_an_hour_after_they_expire() {
        let t = 2_000_000_000;
        let mut state = MonitorState::default();
        let w = Watch::default();
        judge(
            &mut state,
            "main",
            &key("k1", "acme/app", 42, t),
            &w,
            Reporting::Expected,
            true,
        );
        // Pruning runs at each 256th entry: pad to it with entries after
        // the key's grace.
        state.next = 256;
        judge(
            &mut state,
            "main",
            &entry("pin-change", "main", t + KEY_GRACE_SECS + 1, json!({})),
            &w,
            Reporting::Expected,
            true,
        );
        assert!(state.keys.is_empty());
        assert_eq!(state.next, 257);
    }
}
