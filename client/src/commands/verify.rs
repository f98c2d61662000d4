//! `provenix verify CACHE PATH`: checks a path's upload records against the
//! cache's transparency log, trusting neither the server's database nor
//! its answers: the checkpoint's signature and its consistency with the
//! last one seen, each record's entry and its inclusion in the tree, the
//! statement's signature by the key the log recorded being certified, and
//! the revocations logged after it. One line per check; exits non-zero
//! unless some record passes every check and no check found tampering.

use anyhow::{bail, Context, Result};
use clap::Args;
use provenix_provenance::audit::UploadRecord;
use provenix_provenance::exchange;
use provenix_provenance::tlog::checkpoint::VerifiedCheckpoint;
use provenix_provenance::tlog::entry::Entry;

use super::client_for;
use crate::tlog::{show, Continuity, LogReader};

/// Verify a store path's provenance against the cache's transparency log.
#[derive(Args)]
pub struct VerifyArgs {
    /// `[SERVER:]CACHE`
    cache: String,
    /// A store path, its base name or its hash.
    path: String,
}

fn ok(what: &str) {
    println!("ok    {what}");
}

fn fail(what: &str) {
    println!("FAIL  {what}");
}

/// How one record fared.
enum Verdict {
    Good,
    Revoked,
    Bad,
}

pub async fn run(args: VerifyArgs) -> Result<()> {
    let (api, _, cache) = client_for(&args.cache)?;
    let provenance = api.provenance(&cache, &args.path).await?;
    let log = LogReader::new(api, &cache).await?;
    let (cp, continuity) = log.checkpoint().await?;
    ok(&format!(
        "checkpoint of {}: {} entries, root {}, signed by the log's key",
        cp.origin,
        cp.size,
        show(&cp.root)
    ));
    if log.witness_count() > 0 {
        ok(&format!(
            "cosigned by {} of {} witnesses (quorum {})",
            log.cosigned(&cp),
            log.witness_count(),
            log.quorum
        ));
    }
    match continuity {
        Continuity::First => ok("first checkpoint this client saw of the log (remembered)"),
        Continuity::ConsistentWith(n) => ok(&format!(
            "consistent with the checkpoint of {n} entries seen before"
        )),
    }
    if provenance.uploads.is_empty() {
        fail(&format!("{}: no upload records", args.path));
        bail!("nothing to verify");
    }
    let revocations = revocations_after(&log, &cp, &provenance.uploads).await?;
    let (mut good, mut bad) = (0, 0);
    for record in &provenance.uploads {
        match check_record(&log, &cp, record, &revocations).await {
            Verdict::Good => good += 1,
            Verdict::Revoked => {}
            Verdict::Bad => bad += 1,
        }
    }
    if bad > 0 {
        bail!("{bad} record(s) failed verification");
    }
    if good == 0 {
        bail!("no record of {} stands: every one is revoked", args.path);
    }
    Ok(())
}

/// The revocation entries after the earliest record: (index, entry).
async fn revocations_after(
    log: &LogReader,
    cp: &VerifiedCheckpoint,
    records: &[UploadRecord],
) -> Result<Vec<(u64, Entry)>> {
    let Some(start) = records.iter().filter_map(|r| r.log_index).min() else {
        return Ok(Vec::new());
    };
    let entries = log.entries_from(cp, start as u64).await?;
    Ok(entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| Some((start as u64 + i as u64, Entry::decode(e).ok()?)))
        .filter(|(_, e)| e.header.kind == "revocation")
        .collect())
}

async fn check_record(
    log: &LogReader,
    cp: &VerifiedCheckpoint,
    record: &UploadRecord,
    revocations: &[(u64, Entry)],
) -> Verdict {
    let who = format!("upload #{} ({})", record.id, record.key.subject);
    match check_signed(log, cp, record, &who).await {
        Ok(index) => {
            let line = format!("{}\n", record.store_path);
            let later = revocations.iter().find(|(i, e)| {
                *i > index
                    && String::from_utf8_lossy(&e.body)
                        .lines()
                        .any(|l| format!("{l}\n") == line)
            });
            match later {
                Some((i, e)) => {
                    let reason = e
                        .header
                        .asserted
                        .get("reason")
                        .and_then(|r| r.as_str())
                        .unwrap_or("");
                    println!("REVOKED  {who}: by log entry {i} ({reason})");
                    Verdict::Revoked
                }
                None => {
                    ok(&format!("{who}: no later revocation in the log covers it"));
                    Verdict::Good
                }
            }
        }
        Err(e) => {
            fail(&format!("{who}: {e:#}"));
            Verdict::Bad
        }
    }
}

/// The record's and its key's entries, included and matching, and the
/// statement's signature; returns the record's index.
async fn check_signed(
    log: &LogReader,
    cp: &VerifiedCheckpoint,
    record: &UploadRecord,
    who: &str,
) -> Result<u64> {
    let index = record.log_index.context("the record is not in the log")? as u64;
    let entry = log.entry(cp, index).await?;
    let entry = Entry::decode(&entry).context("its log entry does not decode")?;
    let asserted = |k: &str| {
        entry
            .header
            .asserted
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
    };
    if entry.header.kind != "upload"
        || !entry.binds(record.statement.as_bytes())
        || asserted("signature") != record.signature
        || asserted("store_path") != record.store_path
    {
        bail!("log entry {index} is not this record (another statement, signature or path)");
    }
    ok(&format!(
        "{who}: log entry {index}, included in the checkpoint"
    ));

    let key_index = record.key.log_index.context("its key is not in the log")? as u64;
    let key_entry = log.entry(cp, key_index).await?;
    let key_entry = Entry::decode(&key_entry).context("its key's log entry does not decode")?;
    let key_asserted = |k: &str| {
        key_entry
            .header
            .asserted
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
    };
    if key_entry.header.kind != "upload-key"
        || key_asserted("key_id") != record.key.key_id
        || key_entry.body != record.key.certificate.as_bytes()
    {
        bail!("log entry {key_index} is not this record's key");
    }
    if key_index >= index {
        bail!("its key was logged (entry {key_index}) after the upload (entry {index})");
    }
    ok(&format!(
        "{who}: key {} certified at log entry {key_index}, before the upload",
        record.key.key_id
    ));

    let public_key = exchange::decode_public_key(key_asserted("public_key"))
        .context("the logged key's public key does not parse")?;
    exchange::verify(&public_key, record.statement.as_bytes(), &record.signature).map_err(
        |_| anyhow::anyhow!("the statement's signature does not verify with the logged key"),
    )?;
    ok(&format!("{who}: statement signed by that key"));
    Ok(index)
}
