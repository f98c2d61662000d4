//! `provenix verify-attestation`: checks an exported in-toto envelope
//! offline against the cache's public key, and says what it attests.

use anyhow::{bail, Context, Result};
use clap::Args;
use provenix_provenance::{attestation, PublicKey};

use crate::time::format_time;

/// Verify an exported attestation offline with the cache's public key.
///
/// Prints what it attests and when it was exported; fails when the
/// attestation says the path is revoked.
#[derive(Args)]
pub struct VerifyAttestationArgs {
    file: std::path::PathBuf,
    /// The cache's public key, NAME:BASE64 (`provenix cache info` prints it).
    #[arg(long)]
    key: String,
}

pub fn run(args: VerifyAttestationArgs) -> Result<()> {
    let VerifyAttestationArgs { file, key } = args;
    let key = PublicKey::parse(&key)
        .context("--key must be NAME:BASE64 (as `provenix cache info` prints)")?;
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let st = attestation::verify(&bytes, &key)?;
    let subject = &st["subject"][0];
    let (Some(name), Some(digest)) = (
        subject["name"].as_str(),
        subject["digest"]["sha256"].as_str(),
    ) else {
        bail!("the statement has no subject");
    };
    let predicate = &st["predicate"];
    println!("Verified: signed by {}", key.name());
    println!("Subject: {name} (NAR sha256 {digest})");
    match predicate[attestation::EXPORTED_AT].as_i64() {
        Some(at) => println!("Exported: {} (what the cache knew then)", format_time(at)),
        None => println!("Exported: at an unknown time (the attestation predates export times)"),
    }
    if let Some(uploads) = predicate["uploads"].as_array() {
        for u in uploads {
            let revocation = u["revocation"]
                .as_object()
                .or_else(|| u["key"]["revocation"].as_object())
                .map(|r| {
                    format!(
                        " (revoked {} by {}: {})",
                        format_time(r.get("at").and_then(|v| v.as_i64()).unwrap_or(0)),
                        r.get("actor").and_then(|v| v.as_str()).unwrap_or("?"),
                        r.get("reason").and_then(|v| v.as_str()).unwrap_or("?")
                    )
                })
                .unwrap_or_default();
            println!(
                "Uploaded {} by {}{revocation}",
                format_time(u["uploaded_at"].as_i64().unwrap_or(0)),
                u["key"]["subject"].as_str().unwrap_or("?")
            );
        }
    }
    if predicate[attestation::REVOKED].as_bool() == Some(true) {
        println!(
            "Revoked: every upload record of this path is revoked; the cache no longer serves it"
        );
        // A script gating on this command must not pass a revoked path.
        bail!("the attestation verifies, but {name} is revoked");
    }
    if predicate[attestation::SERVED].as_bool() == Some(false) {
        println!("Not served: the cache no longer served this path when it signed the export (deleted or expired)");
        bail!("the attestation verifies, but the cache no longer serves {name}");
    }
    Ok(())
}
