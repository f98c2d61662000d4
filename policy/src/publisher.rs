//! Trusted publishers: which CI identities may obtain a signing key for a
//! cache. Matching is a pure function of the publisher and the verified
//! token's claims, so every rule (ids over names, workflow files, reusable
//! workflows, events, runners) is unit-tested here.

use provenix_provenance::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use thiserror::Error;

use crate::cache_name::pattern_matches;

/// Events refused unless a publisher names them: they run with the base
/// repository's privileges on code an outsider controls.
pub const EVENTS_REFUSED_BY_DEFAULT: &[&str] = &["pull_request_target"];

/// The config name of GitHub Actions' issuer unless a publisher says otherwise.
pub const DEFAULT_GITHUB_ISSUER: &str = "github";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Publisher {
    Github(GithubPublisher),
    Gitlab(GitlabPublisher),
    Generic(GenericPublisher),
    /// Not a CI identity: a Nix signing key whose narinfo signatures
    /// vouch for `nix copy --to` uploads by one token subject.
    NixKey(NixKeyPublisher),
}

/// The config name of GitLab's issuer unless a publisher says otherwise.
pub const DEFAULT_GITLAB_ISSUER: &str = "gitlab";

fn default_gitlab_issuer() -> String {
    DEFAULT_GITLAB_ISSUER.into()
}

/// A GitLab CI pipeline (gitlab.com or a self-managed instance: the
/// issuer names which), identified by the project's and namespace's
/// numeric ids; the path is shown, never trusted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GitlabPublisher {
    /// `name` of the `[[oidc.issuers]]` entry whose tokens this accepts.
    #[serde(default = "default_gitlab_issuer")]
    pub issuer: String,
    /// `GROUP/PROJECT` (subgroups allowed), for people reading the list.
    pub project: String,
    pub project_id: u64,
    pub namespace_id: u64,
    /// The project's own CI config file that runs, as in
    /// `ci_config_ref_uri` (`HOST/GROUP/PROJECT//PATH@REF`): `.gitlab-ci.yml`.
    pub ci_config: String,
    /// Glob over the `ref` claim (a branch or tag name: `main`, `v*`).
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub ref_glob: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Accept only pipelines on protected branches and tags.
    #[serde(default, skip_serializing_if = "is_false")]
    pub protected_ref: bool,
    /// As [`GithubPublisher::grants_pull`].
    #[serde(default, skip_serializing_if = "is_false")]
    pub grants_pull: bool,
}

/// A GitHub Actions workflow, identified by numeric ids (names are shown,
/// never trusted: a renamed or re-registered account gets new ids).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GithubPublisher {
    /// `name` of the `[[oidc.issuers]]` entry whose tokens this accepts.
    #[serde(default = "default_github_issuer")]
    pub issuer: String,
    /// `OWNER/REPO`, for people reading the list.
    pub repository: String,
    pub repository_id: u64,
    pub owner_id: u64,
    /// File name under `.github/workflows/` of the workflow that runs.
    pub workflow: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Glob over the `ref` claim (`refs/heads/main`, `refs/tags/v*`).
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub ref_glob: Option<String>,
    /// `OWNER/REPO/PATH@REF` (REF may be a glob): the reusable workflow the
    /// job must run in, read from `job_workflow_ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reusable_workflow: Option<String>,
    /// Events otherwise refused (`pull_request_target`) that are accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_events: Vec<String>,
    #[serde(default)]
    pub allow_self_hosted: bool,
    /// Whether the job's session token may also pull from the cache. Off by
    /// default: a publisher is trusted to push, and reading a private cache
    /// is a grant of its own (`publisher add --grant-pull`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub grants_pull: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_github_issuer() -> String {
    DEFAULT_GITHUB_ISSUER.into()
}

/// Any OIDC issuer (GitLab, Forgejo, ...): every named claim must match its glob.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GenericPublisher {
    pub issuer: String,
    pub claims: BTreeMap<String, String>,
    /// As [`GithubPublisher::grants_pull`].
    #[serde(default, skip_serializing_if = "is_false")]
    pub grants_pull: bool,
}

/// A Nix public key (`NAME:BASE64`) registered for uploads through Nix's
/// own HTTP binary cache protocol: a narinfo PUT by a token whose `sub` is
/// `subject` is accepted only when this key signed it. The key is
/// recorded as an upload key of kind `nix-key`, so records, audits and
/// revocations treat it as any other upload key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NixKeyPublisher {
    pub nix_key: String,
    pub subject: String,
}

/// A publisher as registered on a cache (the API's list entries).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegisteredPublisher {
    pub id: i64,
    pub publisher: Publisher,
    pub created_by: String,
    pub created_at: i64,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid publisher: {0}")]
pub struct PublisherError(pub String);

/// Why a publisher did not match: the claim, what it was, what was wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub code: ErrorCode,
    pub claim: String,
    pub found: String,
    pub wanted: String,
    /// How many checks passed before this one: the deepest mismatch over all
    /// publishers is the one worth reporting.
    pub depth: u8,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "claim {} is {:?}, publisher wants {}",
            self.claim, self.found, self.wanted
        )
    }
}

/// A claim as text: GitHub sends ids as strings, other issuers as numbers.
pub fn claim_text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn valid_glob(g: &str) -> bool {
    !g.is_empty() && g.len() <= 500 && !g.chars().any(char::is_control)
}

impl Publisher {
    /// Whether a job matching this publisher may also pull.
    pub fn grants_pull(&self) -> bool {
        match self {
            Publisher::Github(g) => g.grants_pull,
            Publisher::Gitlab(g) => g.grants_pull,
            Publisher::Generic(g) => g.grants_pull,
            Publisher::NixKey(_) => false,
        }
    }

    /// The `[[oidc.issuers]]` name whose tokens this publisher matches;
    /// None for a Nix key, which no OIDC token matches.
    pub fn issuer(&self) -> Option<&str> {
        match self {
            Publisher::Github(g) => Some(&g.issuer),
            Publisher::Gitlab(g) => Some(&g.issuer),
            Publisher::Generic(g) => Some(&g.issuer),
            Publisher::NixKey(_) => None,
        }
    }

    /// One line for lists and error messages.
    pub fn describe(&self) -> String {
        match self {
            Publisher::Github(g) => {
                let mut s = format!(
                    "github {} (repository id {}, owner id {}) workflow {}",
                    g.repository, g.repository_id, g.owner_id, g.workflow
                );
                if let Some(e) = &g.environment {
                    s.push_str(&format!(" environment {e}"));
                }
                if let Some(r) = &g.ref_glob {
                    s.push_str(&format!(" ref {r}"));
                }
                if let Some(r) = &g.reusable_workflow {
                    s.push_str(&format!(" reusable {r}"));
                }
                for e in &g.allow_events {
                    s.push_str(&format!(" +event {e}"));
                }
                if g.allow_self_hosted {
                    s.push_str(" +self-hosted");
                }
                if g.grants_pull {
                    s.push_str(" +pull");
                }
                s
            }
            Publisher::Gitlab(g) => {
                let mut s = format!(
                    "{} {} (project id {}, namespace id {}) ci config {}",
                    g.issuer, g.project, g.project_id, g.namespace_id, g.ci_config
                );
                if let Some(r) = &g.ref_glob {
                    s.push_str(&format!(" ref {r}"));
                }
                if let Some(e) = &g.environment {
                    s.push_str(&format!(" environment {e}"));
                }
                if g.protected_ref {
                    s.push_str(" +protected-ref");
                }
                if g.grants_pull {
                    s.push_str(" +pull");
                }
                s
            }
            Publisher::Generic(g) => {
                let claims: Vec<String> =
                    g.claims.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let pull = if g.grants_pull { " +pull" } else { "" };
                format!("{} {}{pull}", g.issuer, claims.join(" "))
            }
            Publisher::NixKey(k) => format!("nix key {} for subject {}", k.nix_key, k.subject),
        }
    }

    pub fn validate(&self) -> Result<(), PublisherError> {
        let err = |m: &str| Err(PublisherError(m.to_string()));
        if self.issuer().is_some_and(|i| !valid_glob(i)) {
            return err("the issuer name is empty or not printable");
        }
        match self {
            Publisher::Github(g) => {
                let parts: Vec<&str> = g.repository.split('/').collect();
                let name_ok = |s: &str| {
                    !s.is_empty()
                        && s.len() <= 100
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                };
                if parts.len() != 2 || !parts.iter().all(|p| name_ok(p)) {
                    return err("--github must be OWNER/REPO");
                }
                if g.repository_id == 0 || g.owner_id == 0 {
                    return err("--repository-id and --owner-id must be GitHub's numeric ids (see docs/github-actions.md)");
                }
                let w = &g.workflow;
                if !(w.ends_with(".yml") || w.ends_with(".yaml")) || w.contains('/') || !name_ok(w)
                {
                    return err(
                        "--workflow must be a file name under .github/workflows/, like build.yml",
                    );
                }
                for glob in [&g.environment, &g.ref_glob].into_iter().flatten() {
                    if !valid_glob(glob) {
                        return err("--environment and --ref must be non-empty and printable");
                    }
                }
                if let Some(r) = &g.reusable_workflow {
                    let ok = valid_glob(r)
                        && r.split_once('@').is_some_and(|(path, rf)| {
                            path.split('/').count() >= 3 && !rf.is_empty()
                        });
                    if !ok {
                        return err("--reusable-workflow must be OWNER/REPO/PATH@REF");
                    }
                }
                if g.allow_events.iter().any(|e| !name_ok(e)) {
                    return err("--allow-event takes an event name like pull_request_target");
                }
                Ok(())
            }
            Publisher::Gitlab(g) => {
                let segment_ok = |s: &str| {
                    !s.is_empty()
                        && s.len() <= 255
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                };
                let parts: Vec<&str> = g.project.split('/').collect();
                if parts.len() < 2 || !parts.iter().all(|p| segment_ok(p)) {
                    return err("--gitlab must be GROUP/PROJECT (subgroups allowed)");
                }
                if g.project_id == 0 || g.namespace_id == 0 {
                    return err("--project-id and --namespace-id must be GitLab's numeric ids (see docs/gitlab-ci.md)");
                }
                let config_ok = g
                    .ci_config
                    .split('/')
                    .all(|seg| segment_ok(seg) && seg != "." && seg != "..")
                    && (g.ci_config.ends_with(".yml") || g.ci_config.ends_with(".yaml"));
                if !config_ok {
                    return err("--ci-config must be the path of a YAML file in the project, like .gitlab-ci.yml");
                }
                for glob in [&g.environment, &g.ref_glob].into_iter().flatten() {
                    if !valid_glob(glob) {
                        return err("--environment and --ref must be non-empty and printable");
                    }
                }
                Ok(())
            }
            Publisher::Generic(g) => {
                if g.claims.is_empty() {
                    return err("a generic publisher needs at least one --claim NAME=GLOB");
                }
                if g.claims
                    .iter()
                    .any(|(k, v)| !valid_glob(k) || !valid_glob(v))
                {
                    return err("claim names and globs must be non-empty and printable");
                }
                // A publisher of only `*` globs would accept every token the
                // issuer signs for anyone (gitlab.com signs for all projects).
                if g.claims.values().all(|v| v.chars().all(|c| c == '*')) {
                    return err("at least one --claim must pin a value (not only '*')");
                }
                Ok(())
            }
            Publisher::NixKey(k) => {
                if provenix_provenance::signing::PublicKey::parse(&k.nix_key).is_err() {
                    return err("--nix-key must be a Nix public key, NAME:BASE64 (nix key convert-secret-to-public, or the .pub file of nix-store --generate-binary-cache-key)");
                }
                if !valid_glob(&k.subject) || k.subject.contains('*') {
                    return err(
                        "--subject must be the exact, printable `sub` of the token that uploads",
                    );
                }
                Ok(())
            }
        }
    }

    /// Does a verified token from issuer `issuer_name` match this publisher?
    pub fn matches(&self, issuer_name: &str, claims: &Map<String, Value>) -> Result<(), Mismatch> {
        if self.issuer() != Some(issuer_name) {
            return Err(Mismatch {
                code: ErrorCode::NoMatchingPublisher,
                claim: "iss".into(),
                found: issuer_name.into(),
                wanted: match self.issuer() {
                    Some(i) => format!("issuer {i:?}"),
                    None => "a Nix key's narinfo signature, not an OIDC token".into(),
                },
                depth: 0,
            });
        }
        match self {
            Publisher::Github(g) => g.matches(claims),
            Publisher::Gitlab(g) => g.matches(claims),
            Publisher::Generic(g) => g.matches(claims),
            Publisher::NixKey(_) => unreachable!("no issuer matches a Nix key"),
        }
    }
}

struct Checker<'a> {
    claims: &'a Map<String, Value>,
    depth: u8,
}

impl Checker<'_> {
    fn get(&self, claim: &str) -> String {
        claim_text(self.claims, claim).unwrap_or_default()
    }

    fn fail(&self, code: ErrorCode, claim: &str, found: &str, wanted: String) -> Mismatch {
        Mismatch {
            code,
            claim: claim.into(),
            found: found.into(),
            wanted,
            depth: self.depth,
        }
    }

    fn equal(&mut self, claim: &str, wanted: &str) -> Result<(), Mismatch> {
        self.depth += 1;
        let found = self.get(claim);
        if found == wanted {
            Ok(())
        } else {
            Err(self.fail(
                ErrorCode::NoMatchingPublisher,
                claim,
                &found,
                format!("{wanted:?}"),
            ))
        }
    }

    fn glob(&mut self, claim: &str, glob: &str) -> Result<(), Mismatch> {
        self.depth += 1;
        match claim_text(self.claims, claim) {
            Some(found) if pattern_matches(glob, &found) => Ok(()),
            found => Err(self.fail(
                ErrorCode::NoMatchingPublisher,
                claim,
                &found.unwrap_or_default(),
                format!("a match for {glob:?}"),
            )),
        }
    }
}

/// The workflow file name in a `workflow_ref`
/// (`OWNER/REPO/.github/workflows/FILE@REF` → `FILE`).
pub fn workflow_file(workflow_ref: &str) -> Option<String> {
    let (path, _) = split_workflow_ref(workflow_ref)?;
    let (_, file) = path.split_once("/.github/workflows/")?;
    (!file.is_empty() && !file.contains('/')).then(|| file.to_string())
}

/// GitLab's `ci_config_ref_uri` (`HOST/GROUP/PROJECT//FILE@REF`) as the
/// project path and the file: (`GROUP/PROJECT`, `FILE`).
pub fn gitlab_ci_config(uri: &str) -> Option<(&str, &str)> {
    let (path, _) = uri.rsplit_once('@')?;
    let (host_and_project, file) = path.split_once("//")?;
    let (_, project) = host_and_project.split_once('/')?;
    Some((project, file))
}

/// `OWNER/REPO/PATH@REF` into (`OWNER/REPO/PATH`, `REF`).
fn split_workflow_ref(r: &str) -> Option<(&str, &str)> {
    r.rsplit_once('@')
}

impl GithubPublisher {
    fn matches(&self, claims: &Map<String, Value>) -> Result<(), Mismatch> {
        let mut c = Checker { claims, depth: 1 };
        c.equal("repository_owner_id", &self.owner_id.to_string())?;
        c.equal("repository_id", &self.repository_id.to_string())?;

        // Both `sub` formats name the repository; it must be this token's.
        c.depth += 1;
        let sub = c.get("sub");
        let repository = c.get("repository");
        if let Some(rest) = sub.strip_prefix("repo:") {
            let repo_part = rest.split(':').next().unwrap_or_default();
            let consistent = match repo_part.split_once('/') {
                Some((o, r)) if o.contains('@') || r.contains('@') => {
                    // repo:OWNER@OWNER_ID/REPO@REPO_ID
                    let (o_name, o_id) = o.split_once('@').unwrap_or((o, ""));
                    let (r_name, r_id) = r.split_once('@').unwrap_or((r, ""));
                    o_id == self.owner_id.to_string()
                        && r_id == self.repository_id.to_string()
                        && format!("{o_name}/{r_name}").eq_ignore_ascii_case(&repository)
                }
                Some(_) => repo_part.eq_ignore_ascii_case(&repository),
                None => false,
            };
            if !consistent {
                return Err(c.fail(
                    ErrorCode::NoMatchingPublisher,
                    "sub",
                    &sub,
                    format!(
                        "repo:{repository}:... or repo:OWNER@{}/REPO@{}:...",
                        self.owner_id, self.repository_id
                    ),
                ));
            }
        }

        // The workflow that runs, read from workflow_ref: REPO/.github/workflows/FILE@REF.
        c.depth += 1;
        let workflow_ref = c.get("workflow_ref");
        let expected_prefix = format!("{repository}/.github/workflows/");
        let file = split_workflow_ref(&workflow_ref)
            .and_then(|(path, _)| path.strip_prefix(&expected_prefix))
            .unwrap_or_default();
        if file != self.workflow {
            return Err(c.fail(
                ErrorCode::NoMatchingPublisher,
                "workflow_ref",
                &workflow_ref,
                format!("workflow file {:?}", self.workflow),
            ));
        }

        // A job running in a reusable workflow signs with that workflow's
        // identity: accept it only where the publisher names it.
        c.depth += 1;
        let job_workflow_ref = c.get("job_workflow_ref");
        match &self.reusable_workflow {
            Some(reusable) => {
                if !pattern_matches(reusable, &job_workflow_ref) {
                    return Err(c.fail(
                        ErrorCode::NoMatchingPublisher,
                        "job_workflow_ref",
                        &job_workflow_ref,
                        format!("reusable workflow {reusable:?}"),
                    ));
                }
            }
            None => {
                if !job_workflow_ref.is_empty() && job_workflow_ref != workflow_ref {
                    return Err(c.fail(
                        ErrorCode::NoMatchingPublisher,
                        "job_workflow_ref",
                        &job_workflow_ref,
                        format!("{workflow_ref:?} (the job runs in a reusable workflow; name it with --reusable-workflow)"),
                    ));
                }
            }
        }

        c.depth += 1;
        let event = c.get("event_name");
        if EVENTS_REFUSED_BY_DEFAULT.contains(&event.as_str())
            && !self.allow_events.contains(&event)
        {
            return Err(c.fail(
                ErrorCode::EventNotAllowed,
                "event_name",
                &event,
                format!("an event other than {event} (add --allow-event {event} to accept it)"),
            ));
        }

        c.depth += 1;
        let runner = c.get("runner_environment");
        if runner != "github-hosted" && !self.allow_self_hosted {
            return Err(c.fail(
                ErrorCode::SelfHostedRunnerNotAllowed,
                "runner_environment",
                &runner,
                "\"github-hosted\" (add --allow-self-hosted to accept self-hosted runners)".into(),
            ));
        }

        if let Some(env) = &self.environment {
            c.equal("environment", env)?;
        }
        if let Some(glob) = &self.ref_glob {
            c.glob("ref", glob)?;
        }
        Ok(())
    }
}

impl GitlabPublisher {
    fn matches(&self, claims: &Map<String, Value>) -> Result<(), Mismatch> {
        let mut c = Checker { claims, depth: 1 };
        c.equal("namespace_id", &self.namespace_id.to_string())?;
        c.equal("project_id", &self.project_id.to_string())?;
        // The pipeline's top-level config: this project's own file (a
        // config kept in another project, or another file, is another
        // pipeline). HOST/PROJECT_PATH//FILE@REF.
        c.depth += 1;
        let uri = c.get("ci_config_ref_uri");
        let project_path = c.get("project_path");
        let file = gitlab_ci_config(&uri)
            .filter(|(project, _)| project.eq_ignore_ascii_case(&project_path))
            .map(|(_, file)| file)
            .unwrap_or_default();
        if file != self.ci_config {
            return Err(c.fail(
                ErrorCode::NoMatchingPublisher,
                "ci_config_ref_uri",
                &uri,
                format!("the project's own {:?}", self.ci_config),
            ));
        }
        if self.protected_ref {
            c.equal("ref_protected", "true")?;
        }
        if let Some(env) = &self.environment {
            c.equal("environment", env)?;
        }
        if let Some(glob) = &self.ref_glob {
            c.glob("ref", glob)?;
        }
        Ok(())
    }
}

impl GenericPublisher {
    fn matches(&self, claims: &Map<String, Value>) -> Result<(), Mismatch> {
        let mut c = Checker { claims, depth: 1 };
        for (claim, glob) in &self.claims {
            c.glob(claim, glob)?;
        }
        Ok(())
    }
}

/// The first publisher (by position) that matches, or the most telling
/// mismatch: the one that got furthest, so the error names the claim a user
/// most likely got wrong.
/// Whether a token refused by a cache's publishers may be told why (which
/// publisher came closest and which claim differed, naming its repository,
/// workflow, environment and ref glob). Only if the cache is public, or if
/// one of its publishers names the repository the token comes from: then
/// the caller is the project the cache trusts, debugging its workflow.
/// Anyone else (any GitHub user can mint a token from their own workflow)
/// gets the answer a missing cache gets, so a private cache's existence
/// and publishers stay private.
pub fn may_explain_refusal<'a>(
    cache_is_public: bool,
    publishers: impl IntoIterator<Item = &'a Publisher>,
    issuer_name: &str,
    claims: &Map<String, Value>,
) -> bool {
    cache_is_public
        || publishers
            .into_iter()
            .any(|p| p.names_repository_of(issuer_name, claims))
}

impl Publisher {
    /// Whether this publisher names the repository the token comes from,
    /// by id: GitHub's `repository_id`; for a generic issuer an exact (not
    /// glob) `project_id` or `repository_id` claim (GitLab, Forgejo).
    pub fn names_repository_of(&self, issuer_name: &str, claims: &Map<String, Value>) -> bool {
        if self.issuer() != Some(issuer_name) {
            return false;
        }
        match self {
            Publisher::Github(g) => {
                claim_text(claims, "repository_id") == Some(g.repository_id.to_string())
            }
            Publisher::Gitlab(g) => {
                claim_text(claims, "project_id") == Some(g.project_id.to_string())
            }
            Publisher::Generic(g) => ["project_id", "repository_id"].iter().any(|name| {
                g.claims.get(*name).is_some_and(|wanted| {
                    !wanted.contains('*') && claim_text(claims, name).as_ref() == Some(wanted)
                })
            }),
            Publisher::NixKey(_) => false,
        }
    }
}

pub fn find_match<'a, T>(
    publishers: &'a [(T, Publisher)],
    issuer_name: &str,
    claims: &Map<String, Value>,
) -> Result<&'a T, Option<(&'a T, Mismatch)>> {
    let mut best: Option<(&T, Mismatch)> = None;
    for (id, p) in publishers {
        match p.matches(issuer_name, claims) {
            Ok(()) => return Ok(id),
            Err(m) => {
                if best.as_ref().is_none_or(|(_, b)| m.depth > b.depth) {
                    best = Some((id, m));
                }
            }
        }
    }
    Err(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gitlab() -> GitlabPublisher {
        GitlabPublisher {
            issuer: "gitlab".into(),
            project: "acme/tools/app".into(),
            project_id: 4242,
            namespace_id: 77,
            ci_config: ".gitlab-ci.yml".into(),
            ref_glob: None,
            environment: None,
            protected_ref: false,
            grants_pull: false,
        }
    }

    /// What GitLab puts in a CI job's ID token (ids as strings).
    fn gitlab_claims() -> Map<String, Value> {
        serde_json::json!({
            "namespace_id": "77",
            "namespace_path": "acme/tools",
            "project_id": "4242",
            "project_path": "acme/tools/app",
            "ci_config_ref_uri": "gitlab.example.com/acme/tools/app//.gitlab-ci.yml@refs/heads/main",
            "ref": "main",
            "ref_type": "branch",
            "ref_protected": "true",
            "environment": "production",
            "pipeline_source": "push",
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn gitlab_pipelines_match_by_ids_and_their_own_ci_config() {
        let p = Publisher::Gitlab(gitlab());
        p.validate().unwrap();
        p.matches("gitlab", &gitlab_claims()).unwrap();
        let strict = Publisher::Gitlab(GitlabPublisher {
            ref_glob: Some("ma*".into()),
            environment: Some("production".into()),
            protected_ref: true,
            ..gitlab()
        });
        strict.matches("gitlab", &gitlab_claims()).unwrap();
        let with = |k: &str, v: &str| {
            let mut c = gitlab_claims();
            c.insert(k.into(), Value::String(v.into()));
            c
        };
        for (claims, claim) in [
            (with("project_id", "4243"), "project_id"),
            (with("namespace_id", "78"), "namespace_id"),
            // A renamed project keeps its ids, and its own file still runs;
            // but the config of another project, or another file, does not.
            (
                with(
                    "ci_config_ref_uri",
                    "gitlab.example.com/evil/x//.gitlab-ci.yml@refs/heads/main",
                ),
                "ci_config_ref_uri",
            ),
            (
                with(
                    "ci_config_ref_uri",
                    "gitlab.example.com/acme/tools/app//deploy.yml@refs/heads/main",
                ),
                "ci_config_ref_uri",
            ),
            (with("ci_config_ref_uri", "garbage"), "ci_config_ref_uri"),
            (with("ref_protected", "false"), "ref_protected"),
            (with("environment", "staging"), "environment"),
            (with("ref", "feature"), "ref"),
        ] {
            assert_eq!(strict.matches("gitlab", &claims).unwrap_err().claim, claim);
        }
        assert_eq!(
            p.matches("github", &gitlab_claims()).unwrap_err().claim,
            "iss"
        );
        assert!(p.names_repository_of("gitlab", &gitlab_claims()));
        assert!(!p.names_repository_of("gitlab", &with("project_id", "1")));
        for bad in [
            GitlabPublisher {
                project: "app".into(),
                ..gitlab()
            },
            GitlabPublisher {
                project_id: 0,
                ..gitlab()
            },
            GitlabPublisher {
                ci_config: "../x.yml".into(),
                ..gitlab()
            },
            GitlabPublisher {
                ci_config: "ci.txt".into(),
                ..gitlab()
            },
        ] {
            assert!(Publisher::Gitlab(bad).validate().is_err());
        }
    }
    use serde_json::json;

    #[test]
    fn refusals_are_explained_only_to_the_trusted_project_or_on_public_caches() {
        let github = Publisher::Github(publisher());
        let generic = Publisher::Generic(GenericPublisher {
            issuer: "gitlab".into(),
            claims: BTreeMap::from([
                ("project_id".into(), "77".into()),
                ("ref".into(), "main".into()),
            ]),
            grants_pull: false,
        });
        let globbed = Publisher::Generic(GenericPublisher {
            issuer: "gitlab".into(),
            claims: BTreeMap::from([("project_id".into(), "7*".into())]),
            grants_pull: false,
        });
        let claims = |v: Value| v.as_object().cloned().unwrap();
        let own = claims(json!({"repository_id": "42"}));
        let stranger = claims(json!({"repository_id": "99"}));
        let numeric = claims(json!({"repository_id": 42}));
        #[rustfmt::skip]
        // (cache is public, publisher, token's issuer, token's claims, explained)
        type Case<'a> = (bool, &'a Publisher, &'a str, &'a Map<String, Value>, bool);
        let table: &[Case] = &[
            (false, &github, "github", &own, true),
            (false, &github, "github", &numeric, true),
            (false, &github, "github", &stranger, false),
            (true, &github, "github", &stranger, true),
            (false, &github, "other-issuer", &own, false),
            (
                false,
                &generic,
                "gitlab",
                &claims(json!({"project_id": "77"})),
                true,
            ),
            (
                false,
                &generic,
                "gitlab",
                &claims(json!({"project_id": "78"})),
                false,
            ),
            (
                false,
                &generic,
                "github",
                &claims(json!({"project_id": "77"})),
                false,
            ),
            (
                false,
                &globbed,
                "gitlab",
                &claims(json!({"project_id": "77"})),
                false,
            ),
        ];
        for (public, p, issuer, c, want) in table {
            assert_eq!(
                may_explain_refusal(*public, [*p], issuer, c),
                *want,
                "{public} {issuer} {c:?}"
            );
        }
        assert!(!may_explain_refusal(false, [], "github", &own));
    }

    fn publisher() -> GithubPublisher {
        GithubPublisher {
            issuer: "github".into(),
            repository: "octo-org/octo-repo".into(),
            repository_id: 42,
            owner_id: 7,
            workflow: "build.yml".into(),
            environment: None,
            ref_glob: None,
            reusable_workflow: None,
            allow_events: vec![],
            allow_self_hosted: false,
            grants_pull: false,
        }
    }

    /// The claim set GitHub documents for a push on main.
    fn claims() -> Map<String, Value> {
        json!({
            "sub": "repo:octo-org/octo-repo:ref:refs/heads/main",
            "repository": "octo-org/octo-repo",
            "repository_id": "42",
            "repository_owner": "octo-org",
            "repository_owner_id": "7",
            "workflow_ref": "octo-org/octo-repo/.github/workflows/build.yml@refs/heads/main",
            "job_workflow_ref": "octo-org/octo-repo/.github/workflows/build.yml@refs/heads/main",
            "ref": "refs/heads/main",
            "event_name": "push",
            "runner_environment": "github-hosted",
            "environment": "prod",
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn check(p: &GithubPublisher, c: &Map<String, Value>) -> Result<(), Mismatch> {
        Publisher::Github(p.clone()).matches("github", c)
    }

    fn with(key: &str, value: &str) -> Map<String, Value> {
        let mut c = claims();
        c.insert(key.into(), Value::String(value.into()));
        c
    }

    #[test]
    fn the_registered_workflow_matches() {
        assert_eq!(check(&publisher(), &claims()), Ok(()));
        // The id-bearing sub format.
        let c = with("sub", "repo:octo-org@7/octo-repo@42:ref:refs/heads/main");
        assert_eq!(check(&publisher(), &c), Ok(()));
        // Ids as JSON numbers (other issuers' habit).
        let mut c = claims();
        c.insert("repository_id".into(), json!(42));
        assert_eq!(check(&publisher(), &c), Ok(()));
    }

    #[test]
    fn ids_decide_not_names() {
        // Same name, another repository (deleted and re-created, or resurrected account).
        let m = check(&publisher(), &with("repository_id", "43")).unwrap_err();
        assert_eq!(
            (m.claim.as_str(), m.found.as_str()),
            ("repository_id", "43")
        );
        let m = check(&publisher(), &with("repository_owner_id", "8")).unwrap_err();
        assert_eq!(m.claim, "repository_owner_id");
        // A sub naming other ids than the claims is refused.
        let c = with("sub", "repo:octo-org@7/octo-repo@99:ref:refs/heads/main");
        assert_eq!(check(&publisher(), &c).unwrap_err().claim, "sub");
        let c = with("sub", "repo:evil/octo-repo:ref:refs/heads/main");
        assert_eq!(check(&publisher(), &c).unwrap_err().claim, "sub");
    }

    #[test]
    fn the_workflow_file_is_read_from_workflow_ref() {
        let c = with(
            "workflow_ref",
            "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main",
        );
        let m = check(&publisher(), &c).unwrap_err();
        assert_eq!(m.claim, "workflow_ref");
        assert!(m.wanted.contains("build.yml"));
        // A file of the same name in another repository's workflow_ref.
        let c = with(
            "workflow_ref",
            "other/octo-repo/.github/workflows/build.yml@refs/heads/main",
        );
        assert_eq!(check(&publisher(), &c).unwrap_err().claim, "workflow_ref");
    }

    #[test]
    fn reusable_workflows_must_be_named() {
        let reusable = "shared-org/ci/.github/workflows/nix.yml@refs/tags/v1";
        let c = with("job_workflow_ref", reusable);
        let m = check(&publisher(), &c).unwrap_err();
        assert_eq!(m.claim, "job_workflow_ref");
        assert!(m.wanted.contains("--reusable-workflow"));
        let mut p = publisher();
        p.reusable_workflow = Some("shared-org/ci/.github/workflows/nix.yml@refs/tags/v*".into());
        assert_eq!(check(&p, &c), Ok(()));
        let c = with(
            "job_workflow_ref",
            "shared-org/ci/.github/workflows/nix.yml@refs/heads/dev",
        );
        assert_eq!(check(&p, &c).unwrap_err().claim, "job_workflow_ref");
    }

    #[test]
    fn pull_request_target_and_self_hosted_are_opt_in() {
        let c = with("event_name", "pull_request_target");
        assert_eq!(
            check(&publisher(), &c).unwrap_err().code,
            ErrorCode::EventNotAllowed
        );
        let mut p = publisher();
        p.allow_events = vec!["pull_request_target".into()];
        assert_eq!(check(&p, &c), Ok(()));

        let c = with("runner_environment", "self-hosted");
        let m = check(&publisher(), &c).unwrap_err();
        assert_eq!(m.code, ErrorCode::SelfHostedRunnerNotAllowed);
        let mut c2 = claims();
        c2.remove("runner_environment");
        assert_eq!(
            check(&publisher(), &c2).unwrap_err().code,
            ErrorCode::SelfHostedRunnerNotAllowed
        );
        let mut p = publisher();
        p.allow_self_hosted = true;
        assert_eq!(check(&p, &c), Ok(()));
    }

    #[test]
    fn environment_and_ref_restrict() {
        let mut p = publisher();
        p.environment = Some("prod".into());
        p.ref_glob = Some("refs/tags/v*".into());
        let m = check(&p, &claims()).unwrap_err();
        assert_eq!(
            (m.claim.as_str(), m.found.as_str()),
            ("ref", "refs/heads/main")
        );
        assert_eq!(check(&p, &with("ref", "refs/tags/v1.2")), Ok(()));
        let m = check(&p, &with("environment", "staging")).unwrap_err();
        assert_eq!(m.claim, "environment");
    }

    #[test]
    fn workflow_files_are_read_from_refs() {
        assert_eq!(
            workflow_file("o/r/.github/workflows/build.yml@refs/heads/main").as_deref(),
            Some("build.yml")
        );
        assert_eq!(workflow_file("o/r/other/build.yml@x"), None);
        assert_eq!(workflow_file("no-ref"), None);
    }

    #[test]
    fn another_issuer_never_matches() {
        let m = Publisher::Github(publisher())
            .matches("gitlab", &claims())
            .unwrap_err();
        assert_eq!(m.claim, "iss");
    }

    #[test]
    fn generic_publishers_match_claim_globs() {
        let p = Publisher::Generic(GenericPublisher {
            issuer: "gitlab".into(),
            claims: [
                ("project_path".to_string(), "group/*".to_string()),
                ("ref_protected".to_string(), "true".to_string()),
            ]
            .into(),
            grants_pull: false,
        });
        p.validate().unwrap();
        let c = json!({"project_path": "group/app", "ref_protected": "true"});
        assert_eq!(p.matches("gitlab", c.as_object().unwrap()), Ok(()));
        let c = json!({"project_path": "other/app", "ref_protected": "true"});
        let m = p.matches("gitlab", c.as_object().unwrap()).unwrap_err();
        assert_eq!(m.claim, "project_path");
        let c = json!({"project_path": "group/app"});
        assert!(p.matches("gitlab", c.as_object().unwrap()).is_err());
    }

    #[test]
    fn validation_refuses_loose_or_malformed_publishers() {
        let only_stars = Publisher::Generic(GenericPublisher {
            issuer: "gitlab".into(),
            claims: [("sub".to_string(), "*".to_string())].into(),
            grants_pull: false,
        });
        assert!(only_stars.validate().is_err());
        let mut p = publisher();
        p.repository = "no-slash".into();
        assert!(Publisher::Github(p).validate().is_err());
        let mut p = publisher();
        p.workflow = ".github/workflows/build.yml".into();
        assert!(Publisher::Github(p).validate().is_err());
        let mut p = publisher();
        p.repository_id = 0;
        assert!(Publisher::Github(p).validate().is_err());
        let mut p = publisher();
        p.reusable_workflow = Some("o/r".into());
        assert!(Publisher::Github(p).validate().is_err());
        assert!(Publisher::Github(publisher()).validate().is_ok());
    }

    #[test]
    fn the_deepest_mismatch_is_reported() {
        let mut other_repo = publisher();
        other_repo.repository_id = 1000;
        let mut other_workflow = publisher();
        other_workflow.workflow = "release.yml".into();
        let list = vec![
            (1, Publisher::Github(other_repo)),
            (2, Publisher::Github(other_workflow)),
        ];
        let (id, m) = find_match(&list, "github", &claims()).unwrap_err().unwrap();
        assert_eq!((*id, m.claim.as_str()), (2, "workflow_ref"));
        let list = vec![(3, Publisher::Github(publisher()))];
        assert_eq!(find_match(&list, "github", &claims()), Ok(&3));
    }
}
