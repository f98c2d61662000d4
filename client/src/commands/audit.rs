//! `provenix audit`: a cache's upload records or divergences, searched by
//! identity and time; JSON for machines, tables for people. Also owns what
//! other commands share with it: the search flags (`AuditFilters`, which
//! `keys list` takes too) and how records print (`provenance` prints them).

use anyhow::Result;
use clap::Args;
use provenix_provenance::audit::{
    AuditQuery, ClosureRecord, DivergenceRecord, KeyRecord, Page, UploadRecord,
};

use super::client_for;
use super::identity_flags::IdentityFlags;
use crate::api::ApiClient;
use crate::time::{format_time, parse_time};

/// Search a cache's upload records (or divergences) by identity and time.
#[derive(Args)]
pub struct AuditArgs {
    cache: String,
    #[command(flatten)]
    filters: AuditFilters,
    /// List refused uploads that claimed another NAR for a cached path.
    #[arg(long)]
    divergences: bool,
    /// List closure statements: pushes vouching for paths the cache held.
    #[arg(long, conflicts_with = "divergences")]
    closures: bool,
}

#[derive(Args)]
pub struct AuditFilters {
    #[command(flatten)]
    identity: IdentityFlags,
    /// From this time (RFC 3339 or Unix seconds).
    #[arg(long)]
    since: Option<String>,
    /// Until this time (RFC 3339 or Unix seconds).
    #[arg(long)]
    until: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[arg(long)]
    limit: Option<i64>,
    /// Continue after a previous page (the `--cursor` it printed).
    #[arg(long)]
    cursor: Option<i64>,
    #[arg(long)]
    pub json: bool,
}

impl AuditFilters {
    pub fn query(&self) -> Result<AuditQuery> {
        Ok(AuditQuery {
            identity: self.identity.selector(),
            since: self.since.as_deref().map(parse_time).transpose()?,
            until: self.until.as_deref().map(parse_time).transpose()?,
            limit: self.limit,
            cursor: self.cursor,
        })
    }
}

pub async fn run(args: AuditArgs) -> Result<()> {
    let (api, _, cache) = client_for(&args.cache)?;
    let q = args.filters.query()?;
    let json = args.filters.json;
    if args.divergences {
        divergences(&api, &cache, &q, json).await
    } else if args.closures {
        closures(&api, &cache, &q, json).await
    } else {
        uploads(&api, &cache, &q, json).await
    }
}

/// The identity claims worth a column, in the order people read them.
const SHOWN_CLAIMS: &[&str] = &[
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "workflow_ref",
    "job_workflow_ref",
    "sha",
    "ref",
    "event_name",
    "environment",
    "run_id",
    "run_attempt",
    "runner_environment",
    "actor",
];

fn claim(k: &KeyRecord, name: &str) -> String {
    provenix_policy::publisher::claim_text(&k.claims, name).unwrap_or_default()
}

fn print_key(k: &KeyRecord, indent: &str) {
    println!("{indent}Key: {} ({}, {})", k.key_id, k.kind, k.status);
    if let Some(r) = &k.revocation {
        println!(
            "{indent}  REVOKED {} by {}: {}",
            format_time(r.at),
            r.actor,
            r.reason
        );
    }
    println!("{indent}Identity: {}", k.subject);
    println!("{indent}Issuer: {}", k.issuer);
    for name in SHOWN_CLAIMS {
        let v = claim(k, name);
        if !v.is_empty() {
            println!("{indent}  {name}: {v}");
        }
    }
    println!(
        "{indent}Valid: {} to {}",
        format_time(k.not_before),
        format_time(k.not_after)
    );
}

pub fn print_upload(u: &UploadRecord) {
    println!(
        "Upload {} at {}: {} ({} bytes), {}",
        u.id,
        format_time(u.uploaded_at),
        u.nar_hash,
        u.nar_size,
        u.outcome
    );
    if let Some(r) = &u.revocation {
        println!(
            "  REVOKED {} by {}: {}",
            format_time(r.at),
            r.actor,
            r.reason
        );
    }
    print_key(&u.key, "  ");
}

pub fn print_divergence(d: &DivergenceRecord) {
    println!(
        "DIVERGENCE {} at {}: {} claimed {} but the cache serves {}",
        d.id,
        format_time(d.at),
        d.store_path,
        d.nar_hash,
        d.existing_nar_hash
    );
    print_key(&d.key, "  claimed by ");
    for u in &d.existing {
        println!("  served since upload {} by {}", u.id, u.key.subject);
    }
}

pub fn print_closure(s: &ClosureRecord) {
    println!(
        "Vouched by closure statement {} at {} ({} paths){}",
        s.id,
        format_time(s.at),
        s.paths,
        if s.is_revoked() { ", REVOKED" } else { "" }
    );
    print_key(&s.key, "  ");
}

async fn closures(api: &ApiClient, cache: &str, q: &AuditQuery, json: bool) -> Result<()> {
    let page: Page<ClosureRecord> = api.audit(cache, "closure-statements", q).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    if page.items.is_empty() {
        println!("No closure statements in \"{cache}\".");
    }
    for s in &page.items {
        print_closure(s);
    }
    more(page.next_cursor);
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let cut: String = s.chars().take(n.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Prints the `--cursor` of the next page, if there is one.
pub fn more(next: Option<i64>) {
    if let Some(c) = next {
        println!("(more: --cursor {c})");
    }
}

async fn uploads(api: &ApiClient, cache: &str, q: &AuditQuery, json: bool) -> Result<()> {
    let page: Page<UploadRecord> = api.audit(cache, "uploads", q).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    println!(
        "{:>6}  {:<20}  {:<12}  {:<28}  {:<14}  {:<10}  STORE PATH",
        "ID", "TIME", "OUTCOME", "REPOSITORY / SUBJECT", "WORKFLOW", "RUN"
    );
    for u in &page.items {
        let repo = claim(&u.key, "repository");
        let who = if repo.is_empty() {
            u.key.subject.clone()
        } else {
            repo
        };
        let workflow = provenix_policy::publisher::workflow_file(&claim(&u.key, "workflow_ref"))
            .unwrap_or_default();
        println!(
            "{:>6}  {:<20}  {:<12}  {:<28}  {:<14}  {:<10}  {}",
            u.id,
            format_time(u.uploaded_at),
            if u.is_revoked() {
                "REVOKED"
            } else {
                u.outcome.as_str()
            },
            truncate(&who, 28),
            truncate(&workflow, 14),
            claim(&u.key, "run_id"),
            u.store_path
        );
    }
    more(page.next_cursor);
    Ok(())
}

async fn divergences(api: &ApiClient, cache: &str, q: &AuditQuery, json: bool) -> Result<()> {
    let page: Page<DivergenceRecord> = api.audit(cache, "divergences", q).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    if page.items.is_empty() {
        println!("No divergences in \"{cache}\".");
    }
    for d in &page.items {
        print_divergence(d);
    }
    more(page.next_cursor);
    Ok(())
}
