//! The local push queue behind `provenix queue add|run`: what Nix's
//! `post-build-hook` calls must return in milliseconds and lose nothing
//! whatever is killed, so `add` writes each call's paths to a file of its
//! own and renames it into `pending/` (a rename is atomic: an entry is
//! either whole or absent), and `run` deletes an entry only after the
//! server took every path in it. A run killed mid-push pushes that entry
//! again next time, which the server answers as already cached.
//!
//! Layout: `DIR/tmp/` (entries being written), `DIR/pending/<time>-<pid>-
//! <n>.paths` (one store path per line, oldest first by name),
//! `DIR/run.lock` (held by the one `queue run` draining DIR).

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;

pub struct Queue {
    dir: PathBuf,
}

/// One file of queued paths.
#[derive(Debug)]
pub struct Entry {
    pub file: PathBuf,
    pub paths: Vec<String>,
}

/// The queue directory: `PROVENIX_QUEUE_DIR`, else
/// `$XDG_STATE_HOME/provenix/queue`, else `~/.local/state/provenix/queue`.
pub fn default_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("PROVENIX_QUEUE_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return Ok(PathBuf::from(d).join("provenix/queue"));
    }
    let home = std::env::var_os("HOME")
        .context("no queue directory: give --queue DIR (a post-build-hook runs without HOME)")?;
    Ok(PathBuf::from(home).join(".local/state/provenix/queue"))
}

impl Queue {
    pub fn open(dir: PathBuf) -> Result<Queue> {
        for sub in ["tmp", "pending"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("cannot create the queue {}", dir.display()))?;
        }
        Ok(Queue { dir })
    }

    /// Appends `paths` as one entry, durably: written and synced under
    /// `tmp/`, then renamed into `pending/`.
    pub fn add(&self, paths: &[String]) -> Result<PathBuf> {
        if paths.is_empty() {
            bail!("no paths to queue");
        }
        for p in paths {
            if p.is_empty() || p.contains(['\n', '\r']) || !p.starts_with('/') {
                bail!("not a store path: {p:?}");
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let name = format!(
            "{nanos:020}-{}-{:08x}.paths",
            std::process::id(),
            rand::random::<u32>()
        );
        let tmp = self.dir.join("tmp").join(&name);
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write to the queue {}", self.dir.display()))?;
        f.write_all(format!("{}\n", paths.join("\n")).as_bytes())?;
        f.sync_all()?;
        let done = self.dir.join("pending").join(&name);
        std::fs::rename(&tmp, &done)?;
        // The rename itself survives a crash once the directory is synced.
        if let Ok(d) = std::fs::File::open(self.dir.join("pending")) {
            let _ = d.sync_all();
        }
        Ok(done)
    }

    /// The pending entries, oldest first, up to about `max_paths` paths
    /// (at least one entry).
    pub fn pending(&self, max_paths: usize) -> Result<Vec<Entry>> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.join("pending"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "paths"))
            .collect();
        names.sort();
        let mut entries = Vec::new();
        let mut count = 0;
        for file in names {
            if count >= max_paths && !entries.is_empty() {
                break;
            }
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                // Taken by nobody else (runs hold the lock), so gone means
                // deleted by hand: nothing to push.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
            };
            let paths: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            count += paths.len();
            entries.push(Entry { file, paths });
        }
        Ok(entries)
    }

    /// Removes entries whose every path the server took.
    pub fn done(&self, entries: &[Entry]) -> Result<()> {
        for e in entries {
            match std::fs::remove_file(&e.file) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err).with_context(|| format!("cannot remove {}", e.file.display()))
                }
            }
        }
        Ok(())
    }

    /// The lock one `queue run` holds while it drains the queue.
    pub fn lock_for_run(&self) -> Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("run.lock"))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another `provenix queue run` is draining {}",
                self.dir.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_whole_in_order_and_gone_once_done() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path().join("q")).unwrap();
        q.add(&["/nix/store/a".into(), "/nix/store/b".into()])
            .unwrap();
        q.add(&["/nix/store/c".into()]).unwrap();
        assert!(q.add(&[]).is_err());
        assert!(q.add(&["/nix/store/x\nrm -rf".into()]).is_err());
        let all = q.pending(100).unwrap();
        let paths: Vec<&str> = all
            .iter()
            .flat_map(|e| &e.paths)
            .map(String::as_str)
            .collect();
        assert_eq!(paths, ["/nix/store/a", "/nix/store/b", "/nix/store/c"]);
        // A batch stops once it has enough paths, but always takes one entry.
        assert_eq!(q.pending(1).unwrap().len(), 1);
        q.done(&all[..1]).unwrap();
        let left = q.pending(100).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].paths, ["/nix/store/c"]);
        // One runner at a time.
        let held = q.lock_for_run().unwrap();
        assert!(q.lock_for_run().is_err());
        drop(held);
        q.lock_for_run().unwrap();
    }
}
