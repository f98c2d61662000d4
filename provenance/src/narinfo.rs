//! The `.narinfo` text format and the fingerprint that its `Sig:` lines sign.

use std::fmt::Write;
use thiserror::Error;

use crate::hash::NarHash;
use crate::signing::{PublicKey, SecretKey};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    /// Absolute store path.
    pub store_path: String,
    pub url: String,
    pub compression: String,
    pub file_hash: Option<String>,
    pub file_size: Option<u64>,
    pub nar_hash: NarHash,
    pub nar_size: u64,
    /// Base names (`<hash>-<name>`) as narinfo writes them.
    pub references: Vec<String>,
    /// Base name of the deriver.
    pub deriver: Option<String>,
    pub sigs: Vec<String>,
    pub ca: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NarInfoError {
    #[error("narinfo line {0:?} is not KEY: VALUE")]
    Line(String),
    #[error("narinfo is missing {0}")]
    Missing(&'static str),
    #[error("narinfo field {0} is invalid")]
    Invalid(&'static str),
}

/// The message Nix signs for a path:
/// `1;<store path>;<narHash>;<narSize>;<comma-separated absolute references>`.
pub fn fingerprint(
    store_dir: &str,
    store_path: &str,
    nar_hash: &NarHash,
    nar_size: u64,
    references: &[String],
) -> String {
    let refs: Vec<String> = references
        .iter()
        .map(|r| format!("{store_dir}/{r}"))
        .collect();
    format!(
        "1;{};{};{};{}",
        store_path,
        nar_hash.to_nix_string(),
        nar_size,
        refs.join(",")
    )
}

impl NarInfo {
    pub fn fingerprint(&self, store_dir: &str) -> String {
        fingerprint(
            store_dir,
            &self.store_path,
            &self.nar_hash,
            self.nar_size,
            &self.references,
        )
    }

    pub fn sign(&mut self, store_dir: &str, key: &SecretKey) {
        let sig = key.sign(self.fingerprint(store_dir).as_bytes());
        self.sigs.push(sig);
    }

    /// True if any `Sig:` verifies under `key`.
    pub fn verify(&self, store_dir: &str, key: &PublicKey) -> bool {
        let fp = self.fingerprint(store_dir);
        self.sigs.iter().any(|s| key.verify(fp.as_bytes(), s))
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "StorePath: {}", self.store_path);
        let _ = writeln!(s, "URL: {}", self.url);
        let _ = writeln!(s, "Compression: {}", self.compression);
        if let Some(h) = &self.file_hash {
            let _ = writeln!(s, "FileHash: {h}");
        }
        if let Some(n) = self.file_size {
            let _ = writeln!(s, "FileSize: {n}");
        }
        let _ = writeln!(s, "NarHash: {}", self.nar_hash.to_nix_string());
        let _ = writeln!(s, "NarSize: {}", self.nar_size);
        let _ = writeln!(s, "References: {}", self.references.join(" "));
        if let Some(d) = &self.deriver {
            let _ = writeln!(s, "Deriver: {d}");
        }
        for sig in &self.sigs {
            let _ = writeln!(s, "Sig: {sig}");
        }
        if let Some(ca) = &self.ca {
            let _ = writeln!(s, "CA: {ca}");
        }
        s
    }

    pub fn parse(text: &str) -> Result<Self, NarInfoError> {
        let (mut store_path, mut url, mut compression) = (None, None, None);
        let (mut nar_hash, mut nar_size) = (None, None);
        let mut info = NarInfo {
            store_path: String::new(),
            url: String::new(),
            compression: String::new(),
            file_hash: None,
            file_size: None,
            nar_hash: NarHash([0; 32]),
            nar_size: 0,
            references: vec![],
            deriver: None,
            sigs: vec![],
            ca: None,
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // `lines` ends a line at "\n" or "\r\n" but leaves a bare "\r"
            // in it; a value ending in one would lose it when rendered and
            // parsed again (render's "\n" after it reads as "\r\n").
            if line.contains('\r') {
                return Err(NarInfoError::Line(line.into()));
            }
            let (k, v) = line
                .split_once(": ")
                .ok_or_else(|| NarInfoError::Line(line.into()))?;
            match k {
                "StorePath" => store_path = Some(v.to_string()),
                "URL" => url = Some(v.to_string()),
                "Compression" => compression = Some(v.to_string()),
                "FileHash" => info.file_hash = Some(v.to_string()),
                "FileSize" => {
                    info.file_size = Some(v.parse().map_err(|_| NarInfoError::Invalid("FileSize"))?)
                }
                "NarHash" => {
                    nar_hash =
                        Some(NarHash::parse(v).map_err(|_| NarInfoError::Invalid("NarHash"))?)
                }
                "NarSize" => {
                    nar_size = Some(v.parse().map_err(|_| NarInfoError::Invalid("NarSize"))?)
                }
                "References" => {
                    info.references = v.split_whitespace().map(str::to_string).collect()
                }
                "Deriver" if v != "unknown-deriver" => info.deriver = Some(v.to_string()),
                "Sig" => info.sigs.push(v.to_string()),
                "CA" => info.ca = Some(v.to_string()),
                _ => {}
            }
        }
        info.store_path = store_path.ok_or(NarInfoError::Missing("StorePath"))?;
        info.url = url.ok_or(NarInfoError::Missing("URL"))?;
        // Nix defaults a missing Compression to bzip2.
        info.compression = compression.unwrap_or_else(|| "bzip2".into());
        info.nar_hash = nar_hash.ok_or(NarInfoError::Missing("NarHash"))?;
        info.nar_size = nar_size.ok_or(NarInfoError::Missing("NarSize"))?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "StorePath: /nix/store/g7yx0xf9rzamh5jdhd4rnmqdrcrs17zf-tree\n\
        URL: nar/x.nar\n\
        NarHash: sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73\n\
        NarSize: 120\n";

    #[test]
    fn crlf_lines_parse_like_lf_lines() {
        let crlf = MINIMAL.replace('\n', "\r\n");
        assert_eq!(NarInfo::parse(&crlf), NarInfo::parse(MINIMAL));
        assert!(NarInfo::parse(MINIMAL).is_ok());
    }

    #[test]
    fn a_bare_carriage_return_is_refused() {
        // Found by fuzz/ (narinfo): "Deriver: x\r\r\n" parsed as "x\r", which
        // render wrote as "Deriver: x\r\n" and a second parse read as "x".
        for extra in ["Deriver: x\r\r\n", "URL: t\rion: zstd\n", "Sig: k:s\r"] {
            let text = format!("{MINIMAL}{extra}");
            assert!(
                matches!(NarInfo::parse(&text), Err(NarInfoError::Line(_))),
                "{extra:?}"
            );
        }
    }
}
