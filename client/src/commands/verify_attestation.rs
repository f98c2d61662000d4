//! `provenix verify-attestation`: checks an exported in-toto envelope
//! offline against the cache's public key, and says what it attests.

use anyhow::{bail, Context, Result};
use clap::Args;
use provenix_provenance::PublicKey;

use crate::time::format_time;

/// Verify an exported attestation offline with the cache's public key.
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
