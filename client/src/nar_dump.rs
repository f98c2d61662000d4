//! Serialises a store path from the local filesystem as a NAR, streamed.
//!
//! Spawning `nix store dump-path` costs tens of milliseconds of CPU per
//! path, which dominates pushing a closure of small paths; where the store's
//! files are on this machine (the default store, a daemon's, a chroot
//! store) the client reads them itself. Written here rather than with the
//! `nix-nar` crate because that one handles UTF-8 names only, and store
//! paths may hold any bytes. The server checks the NAR's hash and size
//! against the signed statement, so a wrong serialisation is refused, never
//! stored.

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use provenix_provenance::nar::{padding, write_str, MAGIC};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Bytes handed to the upload at a time.
const CHUNK: usize = 256 * 1024;

/// Where the files of a store opened as `store` (a `--store` argument, or
/// None for Nix's default) are on this machine, if they are: None for
/// remote stores, which only `nix store dump-path` can read.
pub fn real_store_dir(store: Option<&str>) -> Option<PathBuf> {
    let env = std::env::var("NIX_REMOTE").ok();
    let uri = store.or(env.as_deref()).unwrap_or("");
    let logical = std::env::var("NIX_STORE_DIR").unwrap_or_else(|_| "/nix/store".into());
    let (scheme, params) = uri.split_once('?').unwrap_or((uri, ""));
    let param = |name: &str| {
        params
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    if let Some(real) = param("real") {
        return Some(real.into());
    }
    let logical = param("store").unwrap_or(logical);
    let root = match scheme {
        "" | "auto" | "daemon" | "unix" | "local" => param("root").unwrap_or_default(),
        s if s.starts_with('/') => s.to_string(),
        _ => return None,
    };
    Some(PathBuf::from(format!("{root}{logical}")))
}

/// Streams the NAR of `path` in chunks of at most [`CHUNK`] bytes; an
/// error ends the stream. The walk runs on a blocking thread.
pub fn spawn_dump(path: PathBuf) -> BoxStream<'static, io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut out = Writer {
            buf: Vec::with_capacity(CHUNK),
            tx,
        };
        let done = (|| {
            write_str(&mut out.buf, MAGIC);
            dump_node(&path, &mut out)?;
            out.flush()
        })();
        if let Err(e) = done {
            let _ = out.tx.blocking_send(Err(e));
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) }).boxed()
}

struct Writer {
    buf: Vec<u8>,
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl Writer {
    fn str(&mut self, s: &[u8]) -> io::Result<()> {
        write_str(&mut self.buf, s);
        self.flush_if_full()
    }

    fn flush_if_full(&mut self) -> io::Result<()> {
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::other("the upload stopped reading"))
    }
}

fn dump_node(path: &Path, out: &mut Writer) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    out.str(b"(")?;
    out.str(b"type")?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        out.str(b"symlink")?;
        out.str(b"target")?;
        out.str(fs::read_link(path)?.as_os_str().as_bytes())?;
    } else if ft.is_file() {
        out.str(b"regular")?;
        if meta.permissions().mode() & 0o100 != 0 {
            out.str(b"executable")?;
            out.str(b"")?;
        }
        out.str(b"contents")?;
        dump_contents(path, meta.len(), out)?;
    } else if ft.is_dir() {
        out.str(b"directory")?;
        let mut names: Vec<_> = fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        // Nix orders entries by their bytes.
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            out.str(b"entry")?;
            out.str(b"(")?;
            out.str(b"name")?;
            out.str(name.as_bytes())?;
            out.str(b"node")?;
            dump_node(&path.join(&name), out)?;
            out.str(b")")?;
        }
    } else {
        return Err(io::Error::other(format!(
            "{} is neither a file, a directory nor a symlink",
            path.display()
        )));
    }
    out.str(b")")
}

fn dump_contents(path: &Path, len: u64, out: &mut Writer) -> io::Result<()> {
    out.buf.extend_from_slice(&len.to_le_bytes());
    let mut file = fs::File::open(path)?;
    let mut left = len;
    while left > 0 {
        if out.buf.len() >= CHUNK {
            out.flush()?;
        }
        let start = out.buf.len();
        let want = (CHUNK.saturating_sub(start) as u64).min(left).max(1) as usize;
        out.buf.resize(start + want, 0);
        let n = file.read(&mut out.buf[start..])?;
        out.buf.truncate(start + n);
        if n == 0 {
            return Err(io::Error::other(format!(
                "{} shrank while it was read",
                path.display()
            )));
        }
        left -= n as u64;
    }
    out.buf.resize(out.buf.len() + padding(len), 0);
    out.flush_if_full()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_store_dirs() {
        let d = |s: &str| real_store_dir(Some(s)).map(|p| p.display().to_string());
        assert_eq!(d("/tmp/s").as_deref(), Some("/tmp/s/nix/store"));
        assert_eq!(d("local?root=/r").as_deref(), Some("/r/nix/store"));
        assert_eq!(d("daemon").as_deref(), Some("/nix/store"));
        assert_eq!(d("local?real=/x/y").as_deref(), Some("/x/y"));
        assert_eq!(d("ssh://builder"), None);
        assert_eq!(d("https://cache.nixos.org"), None);
    }

    #[tokio::test]
    async fn dumps_what_the_tree_writer_writes() {
        use provenix_provenance::nar::{self, Node};
        let dir = std::env::temp_dir().join(format!("nar-dump-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("bin")).unwrap();
        let big: Vec<u8> = (0..3 * CHUNK as u32 + 5).map(|i| i as u8).collect();
        fs::write(dir.join("bin/hello"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(dir.join("bin/hello"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::write(dir.join("big"), &big).unwrap();
        fs::write(dir.join("B"), b"").unwrap();
        std::os::unix::fs::symlink("bin/hello", dir.join("link")).unwrap();
        let mut nar = spawn_dump(dir.clone());
        let mut got = Vec::new();
        while let Some(chunk) = nar.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        let expected = nar::write(&Node::Directory(vec![
            (
                "bin".into(),
                Node::Directory(vec![(
                    "hello".into(),
                    Node::Regular {
                        executable: true,
                        contents: b"#!/bin/sh\n".to_vec(),
                    },
                )]),
            ),
            (
                "big".into(),
                Node::Regular {
                    executable: false,
                    contents: big,
                },
            ),
            (
                "B".into(),
                Node::Regular {
                    executable: false,
                    contents: Vec::new(),
                },
            ),
            (
                "link".into(),
                Node::Symlink {
                    target: "bin/hello".into(),
                },
            ),
        ]));
        assert!(
            got == expected,
            "the dump differs from the tree writer's NAR"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
