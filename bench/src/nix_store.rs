//! What the bench does with Nix stores beyond the tests' `NixStore`
//! fixture (private stores driven by Debian's nix-bin, `--store DIR`, no
//! daemon): dump a path's NAR, delete a path, time a pull into a fresh
//! store, and remove a store's read-only tree.

use anyhow::{Context, Result};
use provenix_tests::NixStore;
use std::path::Path;
use std::time::Instant;

/// Writes the path's NAR to `file`; returns its size.
pub fn dump(store: &NixStore, store_path: &str, file: &Path) -> Result<u64> {
    let out = std::fs::File::create(file)?;
    let status = store
        .nix("nix-store")
        .arg("--dump")
        .arg(store.physical(store_path))
        .stdout(out)
        .status()
        .context("cannot run nix-store --dump")?;
    anyhow::ensure!(status.success(), "nix-store --dump failed");
    Ok(std::fs::metadata(file)?.len())
}

pub fn delete(store: &NixStore, store_path: &str) -> Result<()> {
    crate::output(
        store
            .nix("nix-store")
            .args(["--store", &store.root(), "--delete", store_path]),
    )?;
    Ok(())
}

/// `nix copy --from URL` into a new empty store in `dir`, trusting `key`;
/// returns the seconds it took.
pub fn pull_into_fresh(from: &str, store_path: &str, key: &str, dir: &Path) -> Result<f64> {
    remove_store(dir)?;
    let target = NixStore::in_dir(dir);
    let start = Instant::now();
    let (ok, err) = target.copy_from(from, store_path, &[key], None);
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(ok, "nix copy --from {from} failed: {}", err.trim());
    remove_store(dir)?;
    Ok(secs)
}

/// Store directories are read-only; make them writable, then delete.
pub fn remove_store(dir: &Path) -> Result<()> {
    if dir.exists() {
        let _ = std::process::Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(dir)
            .status();
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}
