//! The local Nix store, through the `nix` command (so any store Nix can
//! open works: `--store`, `NIX_REMOTE`, a daemon).

use anyhow::{bail, Context, Result};
use provenix_provenance::NarHash;
use serde::Deserialize;
use std::process::Stdio;
use tokio::process::{Child, Command};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathInfo {
    pub path: String,
    pub nar_hash: NarHash,
    pub nar_size: u64,
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub deriver: Option<String>,
    #[serde(default)]
    pub signatures: Vec<String>,
    #[serde(default)]
    pub ca: Option<String>,
}

#[derive(Clone, Default)]
pub struct LocalStore {
    /// `--store` argument; None uses Nix's default (or NIX_REMOTE).
    pub store: Option<String>,
}

impl LocalStore {
    fn nix(&self) -> Command {
        let mut c = Command::new("nix");
        c.arg("--extra-experimental-features").arg("nix-command");
        if let Some(s) = &self.store {
            c.arg("--store").arg(s);
        }
        c
    }

    /// Path info for `paths` and, with `closure`, everything they reference.
    pub async fn path_infos(&self, paths: &[String], closure: bool) -> Result<Vec<PathInfo>> {
        let mut cmd = self.nix();
        cmd.arg("path-info").arg("--json");
        if closure {
            cmd.arg("--recursive");
        }
        cmd.arg("--").args(paths);
        self.run_path_info(cmd).await
    }

    /// Every valid path of the store, by name only (cheaper than
    /// [`Self::all_path_infos`]).
    pub async fn all_paths(&self) -> Result<std::collections::HashSet<String>> {
        let mut cmd = self.nix();
        cmd.args(["path-info", "--all"]);
        let out = stdout_of(cmd, "nix path-info --all").await?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Which of `paths` are valid in the store, in their order.
    pub async fn valid(&self, paths: &[String]) -> Result<Vec<String>> {
        let mut cmd = Command::new("nix-store");
        if let Some(s) = &self.store {
            cmd.arg("--store").arg(s);
        }
        cmd.args(["--check-validity", "--print-invalid", "--"])
            .args(paths);
        let out = stdout_of(cmd, "nix-store --check-validity").await?;
        let invalid: std::collections::HashSet<&str> =
            std::str::from_utf8(&out).unwrap_or("").lines().collect();
        Ok(paths
            .iter()
            .filter(|p| !invalid.contains(p.as_str()))
            .cloned()
            .collect())
    }

    /// Every valid path of the store.
    pub async fn all_path_infos(&self) -> Result<Vec<PathInfo>> {
        let mut cmd = self.nix();
        cmd.args(["path-info", "--json", "--all"]);
        self.run_path_info(cmd).await
    }

    async fn run_path_info(&self, mut cmd: Command) -> Result<Vec<PathInfo>> {
        let out = cmd
            .output()
            .await
            .context("cannot run `nix` (is Nix installed?)")?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err
                .lines()
                .rev()
                .find(|l| l.contains("error"))
                .unwrap_or(err.trim());
            bail!("nix path-info failed: {}", line.trim());
        }
        parse_path_infos(&out.stdout)
    }

    /// The NAR of `path`: read from the filesystem where the store's files
    /// are on this machine, else from `nix store dump-path`.
    pub fn nar(&self, path: &str) -> Result<NarSource> {
        let local = crate::nar_dump::real_store_dir(self.store.as_deref()).and_then(|dir| {
            let name = path.rsplit('/').next()?;
            let real = dir.join(name);
            std::fs::symlink_metadata(&real).is_ok().then_some(real)
        });
        match local {
            Some(real) => Ok(NarSource::Files(crate::nar_dump::spawn_dump(real))),
            None => Ok(NarSource::Nix(self.dump(path)?)),
        }
    }

    /// `nix store dump-path`, whose stdout is the NAR.
    fn dump(&self, path: &str) -> Result<Child> {
        let mut cmd = self.nix();
        cmd.args(["store", "dump-path", "--", path])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd.spawn().context("cannot run `nix store dump-path`")
    }
}

/// The standard output of a Nix command that must succeed; its error
/// output names the cause otherwise.
async fn stdout_of(mut cmd: Command, what: &str) -> Result<Vec<u8>> {
    let out = cmd
        .output()
        .await
        .with_context(|| format!("cannot run `{what}` (is Nix installed?)"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{what} failed: {}", err.trim());
    }
    Ok(out.stdout)
}

/// Where a NAR's bytes come from.
pub enum NarSource {
    Files(futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>),
    Nix(Child),
}

/// Nix 2.8 prints a JSON array; newer versions an object keyed by path.
pub fn parse_path_infos(json: &[u8]) -> Result<Vec<PathInfo>> {
    let v: serde_json::Value =
        serde_json::from_slice(json).context("nix path-info printed invalid JSON")?;
    let items: Vec<serde_json::Value> = match v {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(m) => m
            .into_iter()
            .map(|(path, mut info)| {
                info["path"] = serde_json::Value::String(path);
                info
            })
            .collect(),
        _ => bail!("nix path-info printed unexpected JSON"),
    };
    items
        .into_iter()
        .map(|i| {
            if i.get("valid") == Some(&serde_json::Value::Bool(false)) {
                bail!("{} is not valid in the local store", i["path"]);
            }
            serde_json::from_value(i).context("unexpected nix path-info output")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nix_2_8_output() {
        // Printed by nix 2.8 `path-info --json -r` for a path with a reference.
        let json = br#"[{"path":"/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-ia-ref","narHash":"sha256-Pek4qXJEaBLju6YU+bvJATvrdShxGoE98Vi1tuOhS1w=","narSize":344,"references":["/nix/store/g7yx0xf9rzamh5jdhd4rnmqdrcrs17zf-tree"],"registrationTime":1795289918},{"path":"/nix/store/g7yx0xf9rzamh5jdhd4rnmqdrcrs17zf-tree","narHash":"sha256-N5SNHeNdonP5bILEynaoLLCITx9dqedfLdBkaFUoy+I=","narSize":896,"references":[],"ca":"fixed:r:sha256:1qnb51anhr6h5mgygaax3x7qic1cm1vcmi42dkwp78jxwcfqv51p","registrationTime":1795289915}]"#;
        let infos = parse_path_infos(json).unwrap();
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0].nar_size, 344);
        assert_eq!(infos[0].references.len(), 1);
        assert!(infos[1]
            .ca
            .as_deref()
            .unwrap()
            .starts_with("fixed:r:sha256:"));
    }
}
