//! A private Nix store (Debian's nix-bin, `--store DIR`, no daemon) holding
//! the paths the bench pushes, and fresh stores the real Nix client pulls
//! into.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct NixStore {
    pub root: PathBuf,
    conf: PathBuf,
    cache_home: PathBuf,
}

impl NixStore {
    /// `trusted_key`: the cache key Nix checks narinfo signatures with.
    pub fn new(dir: &Path, trusted_key: Option<&str>) -> Result<NixStore> {
        let conf = dir.join("conf");
        std::fs::create_dir_all(&conf)?;
        let mut text = String::from(
            "substituters =\nbuild-users-group =\nsandbox = false\nexperimental-features = nix-command\n",
        );
        if let Some(key) = trusted_key {
            text.push_str(&format!("trusted-public-keys = {key}\n"));
        }
        std::fs::write(conf.join("nix.conf"), text)?;
        Ok(NixStore {
            root: dir.join("root"),
            conf,
            cache_home: dir.join("cache-home"),
        })
    }

    /// Isolates a nix command (or the provenix client, which runs nix) from
    /// the machine's configuration.
    pub fn isolate<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        // A fresh narinfo cache each call: nothing is remembered between runs.
        let _ = std::fs::remove_dir_all(&self.cache_home);
        c.env("NIX_CONF_DIR", &self.conf)
            .env("XDG_CACHE_HOME", &self.cache_home)
            .env_remove("NIX_REMOTE")
    }

    pub fn root_arg(&self) -> String {
        self.root.display().to_string()
    }

    /// Adds `source` as a content-addressed path named `name`.
    pub fn add(&self, source: &Path, name: &str) -> Result<String> {
        let out = crate::output(
            self.isolate(&mut Command::new("nix"))
                .args([
                    "store",
                    "add-path",
                    "--store",
                    &self.root_arg(),
                    "--name",
                    name,
                ])
                .arg(source),
        )?;
        Ok(out.trim().to_string())
    }

    /// Where a store path's files are on disk.
    pub fn physical(&self, store_path: &str) -> PathBuf {
        PathBuf::from(format!("{}{store_path}", self.root.display()))
    }

    /// Writes the path's NAR to `file`.
    pub fn dump(&self, store_path: &str, file: &Path) -> Result<u64> {
        let out = std::fs::File::create(file)?;
        let status = self
            .isolate(&mut Command::new("nix-store"))
            .arg("--dump")
            .arg(self.physical(store_path))
            .stdout(out)
            .status()
            .context("cannot run nix-store --dump")?;
        anyhow::ensure!(status.success(), "nix-store --dump failed");
        Ok(std::fs::metadata(file)?.len())
    }

    pub fn delete(&self, store_path: &str) -> Result<()> {
        crate::output(self.isolate(&mut Command::new("nix-store")).args([
            "--store",
            &self.root_arg(),
            "--delete",
            store_path,
        ]))?;
        Ok(())
    }

    /// `nix copy --from URL` into a new empty store; returns the seconds it took.
    pub fn pull_into_fresh(&self, from: &str, store_path: &str, target: &Path) -> Result<f64> {
        remove_store(target)?;
        let start = std::time::Instant::now();
        crate::output(
            self.isolate(&mut Command::new("nix"))
                .args(["copy", "--from", from, "--to"])
                .arg(target)
                .arg(store_path),
        )?;
        let secs = start.elapsed().as_secs_f64();
        remove_store(target)?;
        Ok(secs)
    }
}

/// Store directories are read-only; make them writable, then delete.
pub fn remove_store(dir: &Path) -> Result<()> {
    if dir.exists() {
        let _ = Command::new("chmod").args(["-R", "u+w"]).arg(dir).status();
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}
