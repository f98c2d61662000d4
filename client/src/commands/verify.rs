//! `provenix verify CACHE PATH`: checks a path's upload records against the
//! cache's transparency log, trusting neither the server's database nor
//! its answers: the checkpoint's signature, witnesses and consistency with
//! the last one seen, each record's entry and its inclusion in the tree,
//! its key's entry (logged first, its certificate issued by the server's
//! CA for that very key), the statement's signature by that key, and the
//! revocations logged after it.
//!
//! `provenix verify --offline FILE` checks a saved bundle (the JSON of
//! `provenix provenance --json`, or the in-toto export) with no network:
//! each record's and key's tlog-proof against keys the user gives or this
//! client remembered from reading the log online.
//!
//! One line per check; exits non-zero unless some record passes every
//! check and no check found tampering (3 when one did).

use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::Args;
use provenix_provenance::audit::{Provenance, UploadRecord};
use provenix_provenance::certificate_chain::check_chain;
use provenix_provenance::exchange;
use provenix_provenance::tlog::checkpoint::VerifiedCheckpoint;
use provenix_provenance::tlog::entry::Entry;
use provenix_provenance::tlog::proof::TlogProof;
use provenix_provenance::tlog::upload_check::{
    check_key_ca, check_upload, named_ca, CheckedUpload, UploadCheckError,
};
use std::path::PathBuf;

use super::client_for;
use crate::tlog::{plain, remembered_trust, show, Continuity, LogReader, Tampered, Trust};

/// Verify a store path's provenance against the cache's transparency log.
#[derive(Args)]
pub struct VerifyArgs {
    /// `[SERVER:]CACHE`
    #[arg(required_unless_present = "offline")]
    cache: Option<String>,
    /// A store path, its base name or its hash.
    #[arg(required_unless_present = "offline")]
    path: Option<String>,
    /// Check a saved bundle instead, with no network: the JSON of
    /// `provenix provenance --json` or of `--in-toto`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["cache", "path"])]
    offline: Option<PathBuf>,
    #[command(flatten)]
    pins: super::log::WitnessPins,
    /// Offline: the log's verifier key (default: the one remembered from
    /// reading the log online).
    #[arg(long, value_name = "VKEY", requires = "offline")]
    log_key: Option<String>,
    /// The server's CA certificate, PEM: require the CA the log holds for
    /// each key to be this one (default: any CA certificate the log holds
    /// before the key).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
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

/// Checks the certificate of a key entry chains to `ca_pem` and certifies
/// the key the entry logged.
fn check_certificate(checked: &CheckedUpload, key: &Entry, ca_pem: &[u8]) -> Result<()> {
    let certified = check_chain(&checked.certificate, ca_pem)
        .map_err(|e| Tampered(format!("its certificate: {e}")))?;
    let logged = key
        .header
        .asserted
        .get("public_key")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if exchange::encode_public_key(&certified) != logged {
        return Err(
            Tampered("its certificate certifies another key than the one logged".into()).into(),
        );
    }
    Ok(())
}

pub async fn run(args: VerifyArgs) -> Result<()> {
    if let Some(file) = &args.offline {
        return offline(&args, file);
    }
    let (cache, path) = (
        args.cache.clone().expect("clap requires it"),
        args.path.clone().expect("clap requires it"),
    );
    let (api, _, cache) = client_for(&cache)?;
    let provenance = api.provenance(&cache, &path).await?;
    let pinned_ca = pinned_ca(&args)?;
    let mut log = args.pins.reader(api, &cache).await?;
    let (cp, continuity) = log.checkpoint().await?;
    log.remember_trust()?;
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
        fail(&format!("{path}: no upload records"));
        bail!("nothing to verify");
    }
    let revocations = revocations_after(&log, &cp, &provenance.uploads).await?;
    let mut verdicts = Vec::new();
    for record in &provenance.uploads {
        let who = format!("upload #{}", record.id);
        let checked = check_online(&log, &cp, record, pinned_ca.as_deref(), &who).await;
        verdicts.push(judge(&who, record, checked, &revocations));
    }
    conclude(&path, &verdicts)
}

fn conclude(path: &str, verdicts: &[Verdict]) -> Result<()> {
    let bad = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Bad))
        .count();
    let good = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Good))
        .count();
    if bad > 0 {
        return Err(Tampered(format!("{bad} record(s) failed verification")).into());
    }
    if good == 0 {
        bail!("no record of {path} stands: every one is revoked");
    }
    Ok(())
}

/// A record's verdict: failed, revoked by a later logged revocation, or
/// standing.
fn judge(
    who: &str,
    record: &UploadRecord,
    checked: Result<u64>,
    revocations: &[(u64, Entry)],
) -> Verdict {
    let index = match checked {
        Ok(i) => i,
        Err(e) => {
            fail(&format!("{who}: {e:#}"));
            return Verdict::Bad;
        }
    };
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
            println!("REVOKED  {who}: by log entry {i} ({})", plain(reason));
            Verdict::Revoked
        }
        None => {
            ok(&format!("{who}: no later revocation in the log covers it"));
            Verdict::Good
        }
    }
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

fn decode(bytes: &[u8], index: u64) -> Result<Entry> {
    Entry::decode(bytes)
        .map_err(|e| Tampered(format!("log entry {index} does not decode: {e}")).into())
}

/// The CA certificate `--ca` names, if any.
fn pinned_ca(args: &VerifyArgs) -> Result<Option<Vec<u8>>> {
    args.ca
        .as_ref()
        .map(|f| std::fs::read(f).with_context(|| format!("cannot read {}", f.display())))
        .transpose()
}

/// The three entries' checks, shared by both modes; prints what passed.
fn check_entries(
    who: &str,
    (index, upload): (u64, &Entry),
    (key_index, key): (u64, &Entry),
    ca: Option<(u64, &Entry)>,
    record: &UploadRecord,
    pinned_ca: Option<&[u8]>,
) -> Result<u64> {
    let checked = check_upload(
        (index, upload),
        (key_index, key),
        record.statement.as_bytes(),
    )
    .map_err(|e| Tampered(e.to_string()))?;
    if checked.store_path != record.store_path {
        return Err(Tampered(format!("log entry {index} is of another path")).into());
    }
    // Who pushed is what the log certified, never what the record (an
    // answer or a saved bundle) says: they must agree.
    if record.key.subject != checked.subject
        || key.header.asserted.get("claims")
            != Some(&serde_json::Value::Object(record.key.claims.clone()))
    {
        return Err(Tampered(format!(
            "the record names {} (and claims) its key's log entry {key_index} does not: that entry certifies {}",
            plain(&record.key.subject),
            plain(&checked.subject)
        ))
        .into());
    }
    if checked.nix_key {
        ok(&format!(
            "{who}: Nix key {} registered at log entry {key_index}, before the upload, for {} (a nix copy upload: no certificate)",
            checked.key_id,
            plain(&checked.subject)
        ));
        ok(&format!("{who}: narinfo signed by that key"));
        return Ok(index);
    }
    ok(&format!(
        "{who}: key {} certified at log entry {key_index}, before the upload, for {}",
        checked.key_id,
        plain(&checked.subject)
    ));
    let (ca_index, ca) =
        ca.ok_or_else(|| Tampered(UploadCheckError::NoCaNamed(key_index).to_string()))?;
    check_key_ca((key_index, key), (ca_index, ca)).map_err(|e| Tampered(e.to_string()))?;
    if pinned_ca.is_some_and(|pin| pin.trim_ascii() != ca.body.trim_ascii()) {
        return Err(Tampered(format!(
            "the CA the log holds for the key (entry {ca_index}) is not the one given with --ca"
        ))
        .into());
    }
    check_certificate(&checked, key, &ca.body)?;
    ok(&format!(
        "{who}: its certificate was issued for that key by the CA logged at entry {ca_index}"
    ));
    ok(&format!("{who}: statement signed by that key"));
    Ok(index)
}

/// The record's and its key's entries, read from the log and included in
/// the checkpoint; returns the record's index.
async fn check_online(
    log: &LogReader,
    cp: &VerifiedCheckpoint,
    record: &UploadRecord,
    pinned_ca: Option<&[u8]>,
    who: &str,
) -> Result<u64> {
    let index = record.log_index.context("the record is not in the log")? as u64;
    let upload = decode(&log.entry(cp, index).await?, index)?;
    if upload
        .header
        .asserted
        .get("signature")
        .and_then(|v| v.as_str())
        != Some(record.signature.as_str())
    {
        return Err(Tampered(format!("log entry {index} is not this record")).into());
    }
    ok(&format!(
        "{who}: log entry {index}, included in the checkpoint"
    ));
    let key_index = record.key.log_index.context("its key is not in the log")? as u64;
    let key = decode(&log.entry(cp, key_index).await?, key_index)?;
    // A registered Nix key names no CA: check_entries refuses that for any
    // other key.
    let ca = match named_ca(&key) {
        Some(ca_index) => Some((ca_index, decode(&log.entry(cp, ca_index).await?, ca_index)?)),
        None => None,
    };
    check_entries(
        who,
        (index, &upload),
        (key_index, &key),
        ca.as_ref().map(|(i, e)| (*i, e)),
        record,
        pinned_ca,
    )
}

/// The records of a saved bundle: a provenance answer, or the uploads in
/// an in-toto export's predicate.
fn records_of(bytes: &[u8]) -> Result<(String, Vec<UploadRecord>)> {
    let json: serde_json::Value =
        serde_json::from_slice(bytes).context("the bundle is not JSON")?;
    if let Some(payload) = json.get("payload").and_then(|p| p.as_str()) {
        let statement = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .context("the envelope's payload is not base64")?;
        let statement: serde_json::Value =
            serde_json::from_slice(&statement).context("the envelope's payload is not JSON")?;
        let predicate = &statement["predicate"];
        let uploads: Vec<UploadRecord> = serde_json::from_value(predicate["uploads"].clone())
            .context("the attestation's uploads are not upload records")?;
        let path = predicate["storePath"].as_str().unwrap_or("").to_string();
        return Ok((path, uploads));
    }
    let p: Provenance = serde_json::from_value(json)
        .context("the bundle is neither a provenance answer nor an in-toto export")?;
    Ok((p.store_path.unwrap_or_default(), p.uploads))
}

/// The origin a proof's checkpoint names (its first line).
fn origin_of(proof: &TlogProof) -> String {
    String::from_utf8_lossy(&proof.checkpoint)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

fn offline(args: &VerifyArgs, file: &std::path::Path) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let (path, records) = records_of(&bytes)?;
    if records.is_empty() {
        bail!("the bundle holds no upload records");
    }
    // The keys come from the user or this client's memory, never from the
    // bundle: it names only the origin they are looked up by.
    let first = records[0]
        .tlog_proof
        .as_deref()
        .context("the bundle's first record has no tlog-proof (not yet published when saved?)")?;
    let origin = origin_of(&TlogProof::parse(first).map_err(|e| Tampered(e.to_string()))?);
    let trust = trust_for(args, &origin)?;
    let pinned_ca = pinned_ca(args)?;
    let mut verdicts = Vec::new();
    let mut announced = None;
    for record in &records {
        let who = format!("upload #{}", record.id);
        let checked = check_offline(&trust, record, pinned_ca.as_deref(), &who, &mut announced);
        // Offline, the bundle's own revocation marks are all there is.
        let verdict = match checked {
            Ok(_) if record.is_revoked() => {
                println!("REVOKED  {who}: the bundle says so");
                Verdict::Revoked
            }
            other => judge(&who, record, other, &[]),
        };
        verdicts.push(verdict);
    }
    if let Some(size) = announced {
        println!(
            "note  revocations logged after the checkpoint of {size} entries are not in the bundle: `provenix verify CACHE PATH` checks them online"
        );
    }
    conclude(&path, &verdicts)
}

fn trust_for(args: &VerifyArgs, origin: &str) -> Result<Trust> {
    let remembered = remembered_trust(origin)?;
    let verifier_key = match (&args.log_key, &remembered) {
        (Some(k), _) => k.clone(),
        (None, Some(t)) => t.verifier_key.clone(),
        (None, None) => bail!(
            "no key known for the log {origin}: give --log-key (from `provenix cache info`), or run `provenix verify CACHE PATH` online once"
        ),
    };
    let (witnesses, quorum) = if !args.pins.witnesses.is_empty() {
        (
            args.pins.witnesses.clone(),
            args.pins.quorum.unwrap_or(args.pins.witnesses.len()),
        )
    } else {
        let (w, q) = remembered
            .as_ref()
            .map(|t| (t.witnesses.clone(), t.quorum))
            .unwrap_or_default();
        (w, args.pins.quorum.unwrap_or(q))
    };
    Ok(Trust {
        origin: origin.to_string(),
        verifier_key,
        witnesses,
        quorum,
    })
}

fn check_offline(
    trust: &Trust,
    record: &UploadRecord,
    pinned_ca: Option<&[u8]>,
    who: &str,
    announced: &mut Option<u64>,
) -> Result<u64> {
    let parse = |p: &Option<String>, what: &str| -> Result<TlogProof> {
        let text = p
            .as_deref()
            .with_context(|| format!("the bundle has no tlog-proof for {what}"))?;
        TlogProof::parse(text).map_err(|e| Tampered(format!("{what}'s proof: {e}")).into())
    };
    let upload_proof = parse(&record.tlog_proof, "the upload")?;
    let key_proof = parse(&record.key.tlog_proof, "its key")?;
    let origin = &trust.origin;
    let verify = |p: &TlogProof| -> Result<(VerifiedCheckpoint, Entry)> {
        let (cp, entry) = p
            .verify(&trust.verifier_key, origin, &trust.witnesses, trust.quorum)
            .map_err(|e| Tampered(e.to_string()))?;
        Ok((cp, decode(entry, p.index)?))
    };
    let (cp, upload) = verify(&upload_proof)?;
    if announced.is_none() {
        ok(&format!(
            "checkpoint of {}: {} entries, root {}, signed by the log's key",
            cp.origin,
            cp.size,
            show(&cp.root)
        ));
        if !trust.witnesses.is_empty() {
            ok(&format!(
                "cosigned by at least {} of {} witnesses",
                trust.quorum,
                trust.witnesses.len()
            ));
        }
        *announced = Some(cp.size);
    }
    ok(&format!(
        "{who}: log entry {}, included in the checkpoint of {} entries",
        upload_proof.index, cp.size
    ));
    let (_, key) = verify(&key_proof).context("its key's entry")?;
    let ca = match named_ca(&key) {
        Some(_) => {
            let ca_proof = parse(&record.key.ca_tlog_proof, "its key's CA")?;
            let (_, ca) = verify(&ca_proof).context("its key's CA entry")?;
            Some((ca_proof.index, ca))
        }
        None => None,
    };
    check_entries(
        who,
        (upload_proof.index, &upload),
        (key_proof.index, &key),
        ca.as_ref().map(|(i, e)| (*i, e)),
        record,
        pinned_ca,
    )
}
