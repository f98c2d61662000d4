//! `provenix provenance`, `audit`, `keys list` and `verify-attestation`:
//! JSON for machines, tables for people.

use anyhow::{bail, Context, Result};
use provenix_provenance::audit::{
    AuditQuery, DivergenceRecord, KeyRecord, Page, Provenance, UploadRecord,
};
use provenix_provenance::PublicKey;

use crate::api::ApiClient;
use crate::format_time;

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

fn print_upload(u: &UploadRecord) {
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

pub async fn provenance(
    api: &ApiClient,
    cache: &str,
    path: &str,
    json: bool,
    in_toto: bool,
) -> Result<()> {
    if in_toto {
        let env = api.in_toto(cache, path).await?;
        println!("{}", serde_json::to_string_pretty(&env)?);
        return Ok(());
    }
    let p: Provenance = api.provenance(cache, path).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&p)?);
        return Ok(());
    }
    println!("{}", p.store_path.as_deref().unwrap_or(path));
    for u in &p.uploads {
        print_upload(u);
    }
    for d in &p.divergences {
        print_divergence(d);
    }
    Ok(())
}

fn print_divergence(d: &DivergenceRecord) {
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

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let cut: String = s.chars().take(n.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn more(next: Option<i64>) {
    if let Some(c) = next {
        println!("(more: --cursor {c})");
    }
}

pub async fn uploads(api: &ApiClient, cache: &str, q: &AuditQuery, json: bool) -> Result<()> {
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

pub async fn keys(api: &ApiClient, cache: &str, q: &AuditQuery, json: bool) -> Result<()> {
    let page: Page<KeyRecord> = api.audit(cache, "keys", q).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    println!(
        "{:<32}  {:<20}  {:<8}  {:<6}  SUBJECT",
        "KEY", "ISSUED", "STATUS", "KIND"
    );
    for k in &page.items {
        println!(
            "{:<32}  {:<20}  {:<8}  {:<6}  {}",
            k.key_id,
            format_time(k.not_before),
            k.status,
            k.kind,
            k.subject
        );
    }
    more(page.next_cursor);
    Ok(())
}

pub async fn divergences(api: &ApiClient, cache: &str, q: &AuditQuery, json: bool) -> Result<()> {
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

/// Unix seconds, or an RFC 3339 time (`2026-11-21T10:00:00Z`).
pub fn parse_time(s: &str) -> Result<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let t = humantime::parse_rfc3339_weak(s).with_context(|| {
        format!("invalid time {s:?} (RFC 3339 like 2026-11-21T10:00:00Z, or Unix seconds)")
    })?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0))
}

/// Verifies an exported envelope offline with the cache's public key.
pub fn verify_attestation(file: &std::path::Path, key: &str) -> Result<()> {
    let key = PublicKey::parse(key)
        .context("--key must be NAME:BASE64 (as `provenix cache info` prints)")?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let st = provenix_provenance::attestation::verify(&bytes, &key)?;
    let subject = &st["subject"][0];
    let (Some(name), Some(digest)) = (
        subject["name"].as_str(),
        subject["digest"]["sha256"].as_str(),
    ) else {
        bail!("the statement has no subject");
    };
    println!("Verified: signed by {}", key.name());
    println!("Subject: {name} (NAR sha256 {digest})");
    if let Some(uploads) = st["predicate"]["uploads"].as_array() {
        for u in uploads {
            println!(
                "Uploaded {} by {}",
                format_time(u["uploaded_at"].as_i64().unwrap_or(0)),
                u["key"]["subject"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}
