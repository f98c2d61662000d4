//! Chunk objects on the local disk or S3, through object_store.

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use crate::config::StorageConfig;

/// The reads `read_concatenated` makes of local files.
const LOCAL_READ_SIZE: usize = 1 << 20;

/// What `put_exact` buffers before it starts a multipart upload.
const STREAM_PUT_BUFFER: usize = 10 << 20;

/// What `put_exact` buffers on the local disk.
const LOCAL_STREAM_PUT_BUFFER: usize = 256 << 10;

/// How a `put_exact` ended, when storage itself did not fail.
#[derive(Debug)]
pub enum StreamPut {
    Stored,
    /// The body had this many bytes (or more), not the size asked.
    WrongSize(u64),
    /// Reading the body failed (the client went away).
    BodyFailed(std::io::Error),
}

/// Ranged GETs one `read_ranges` call keeps in flight on S3.
const REMOTE_READS_AT_ONCE: usize = 4;

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Local disk only: maps keys to files for `read_ranges`.
    local: Option<Arc<LocalFileSystem>>,
    /// Local disk only: the storage directory, for the readiness probe.
    local_root: Option<std::path::PathBuf>,
}

impl Storage {
    pub fn from_config(cfg: &StorageConfig) -> Result<Storage> {
        let mut local = None;
        let mut local_root = None;
        let store: Arc<dyn ObjectStore> = match cfg {
            StorageConfig::Local { path } => {
                std::fs::create_dir_all(path).with_context(|| {
                    format!("cannot create storage directory {}", path.display())
                })?;
                // No fsync per object: the database commit is the durability
                // point, and an object lost to a power cut is reported by
                // `--mode verify` (docs/architecture.md).
                // The directories packs go to, made once here: made on
                // demand, they were a twelfth of a small upload's CPU.
                for byte in 0..=255u8 {
                    let dir = path
                        .join(crate::push::pipeline::PACK_PREFIX)
                        .join(format!("{byte:02x}"));
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                let fs = Arc::new(LocalFileSystem::new_with_prefix(path)?);
                local = Some(fs.clone());
                local_root = Some(path.clone());
                fs
            }
            StorageConfig::S3 {
                region,
                bucket,
                endpoint,
                credentials,
                request_timeout,
                connect_timeout,
                max_retries,
                retry_timeout,
            } => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_region(region)
                    .with_bucket_name(bucket)
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_timeout(*request_timeout)
                            .with_connect_timeout(*connect_timeout),
                    )
                    .with_retry(object_store::RetryConfig {
                        backoff: object_store::BackoffConfig::default(),
                        max_retries: *max_retries,
                        retry_timeout: *retry_timeout,
                    });
                if let Some(ep) = endpoint {
                    b = b
                        .with_endpoint(ep)
                        .with_allow_http(ep.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                if let Some(c) = credentials {
                    b = b
                        .with_access_key_id(&c.access_key_id)
                        .with_secret_access_key(&c.secret_access_key);
                }
                Arc::new(b.build().context("invalid [storage] S3 settings")?)
            }
        };
        Ok(Storage {
            store,
            local,
            local_root,
        })
    }

    /// Checks the settings without touching the disk or the network
    /// (`--mode check-config`, which NixOS runs in its build sandbox).
    pub fn check_config(cfg: &StorageConfig) -> Result<()> {
        match cfg {
            StorageConfig::Local { path } => {
                anyhow::ensure!(!path.as_os_str().is_empty(), "[storage] path is empty");
                Ok(())
            }
            StorageConfig::S3 { .. } => Self::from_config(cfg).map(|_| ()),
        }
    }

    /// Whether the storage answers (`GET /ready`): the local directory is
    /// there, or S3 answers a HEAD (a missing object is an answer).
    pub async fn probe(&self) -> Result<()> {
        if let Some(root) = &self.local_root {
            let meta = tokio::fs::metadata(root)
                .await
                .with_context(|| format!("storage directory {}", root.display()))?;
            anyhow::ensure!(
                meta.is_dir(),
                "storage path {} is not a directory",
                root.display()
            );
            return Ok(());
        }
        match self
            .store
            .head(&ObjectPath::from("provenix-ready-probe"))
            .await
        {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).context("object storage"),
        }
    }

    /// Stores the concatenation of `parts` (without copying them together).
    pub async fn put_parts(&self, key: &str, parts: Vec<Bytes>) -> Result<()> {
        self.store
            .put(&ObjectPath::from(key), parts.into_iter().collect())
            .await
            .with_context(|| format!("storing {key}"))?;
        Ok(())
    }

    /// Stores what `body` yields under `key`, if it is exactly `size`
    /// bytes; anything else stores nothing. Memory: one part of an S3
    /// multipart upload at most (object_store's `BufWriter`), whatever the
    /// body's size.
    pub async fn put_exact<S>(&self, key: &str, mut body: S, size: u64) -> Result<StreamPut>
    where
        S: futures::Stream<Item = std::io::Result<Bytes>> + Unpin,
    {
        use tokio::io::AsyncWriteExt;
        // On S3 the buffer is a multipart upload's part (5 MiB at least);
        // on the local disk a write to the file, so a stalled body holds little.
        let capacity = if self.local.is_some() {
            LOCAL_STREAM_PUT_BUFFER
        } else {
            STREAM_PUT_BUFFER
        };
        let mut out = object_store::buffered::BufWriter::with_capacity(
            self.store.clone(),
            ObjectPath::from(key),
            capacity,
        );
        let mut got: u64 = 0;
        let refused = loop {
            match body.next().await {
                None if got == size => break None,
                None => break Some(StreamPut::WrongSize(got)),
                Some(Err(e)) => break Some(StreamPut::BodyFailed(e)),
                Some(Ok(b)) => {
                    got += b.len() as u64;
                    if got > size {
                        break Some(StreamPut::WrongSize(got));
                    }
                    out.write_all(&b)
                        .await
                        .with_context(|| format!("storing {key}"))?;
                }
            }
        };
        match refused {
            Some(r) => {
                let _ = out.abort().await;
                Ok(r)
            }
            None => {
                out.shutdown()
                    .await
                    .with_context(|| format!("storing {key}"))?;
                Ok(StreamPut::Stored)
            }
        }
    }

    /// The bytes of each of `keys` in turn, as one stream read as it goes.
    pub fn read_concatenated(
        &self,
        keys: Vec<String>,
    ) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static {
        if let Some(fs) = self.local.clone() {
            // object_store's local stream reads 8 KiB at a time.
            return futures::stream::iter(keys)
                .then(move |key| {
                    let fs = fs.clone();
                    async move {
                        let path = fs
                            .path_to_filesystem(&ObjectPath::from(key.as_str()))
                            .map_err(std::io::Error::other)?;
                        let file = tokio::fs::File::open(path).await?;
                        Ok::<_, std::io::Error>(tokio_util::io::ReaderStream::with_capacity(
                            file,
                            LOCAL_READ_SIZE,
                        ))
                    }
                })
                .try_flatten()
                .boxed();
        }
        let store = self.store.clone();
        futures::stream::iter(keys)
            .then(move |key| {
                let store = store.clone();
                async move {
                    let got = store
                        .get(&ObjectPath::from(key.as_str()))
                        .await
                        .map_err(std::io::Error::other)?;
                    Ok::<_, std::io::Error>(got.into_stream().map_err(std::io::Error::other))
                }
            })
            .try_flatten()
            .boxed()
    }

    /// Bytes `range` of an object; an object too short for it is an error.
    pub async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        let bytes = self
            .store
            .get_range(&ObjectPath::from(key), range.clone())
            .await
            .with_context(|| format!("reading {key} at {range:?}"))?;
        anyhow::ensure!(
            bytes.len() as u64 == range.end - range.start,
            "reading {key} at {range:?}: the object is shorter"
        );
        Ok(bytes)
    }

    /// The bytes of each `(key, range)` in order, as `get_range` would
    /// return them. This is the NAR-serving path: on the local disk all of
    /// them are read in one blocking task, each file opened once for its
    /// consecutive ranges, into buffers that are not zero-filled first
    /// (object_store's `get_range` spends a blocking-pool hop, an `open` and
    /// a `memset` on every range: a third of the server's time serving a NAR
    /// went to those hops' wake-ups, 7% to `memset`).
    pub async fn read_ranges(
        &self,
        ranges: Vec<(String, std::ops::Range<u64>)>,
    ) -> Result<Vec<Bytes>> {
        let Some(fs) = self.local.clone() else {
            // Remote: ranged GETs, a few at a time (a batch of a NAR spread
            // over many packs holds many small ranges).
            return futures::stream::iter(ranges)
                .map(|(key, r)| async move { self.get_range(&key, r).await })
                .buffered(REMOTE_READS_AT_ONCE)
                .try_collect()
                .await;
        };
        tokio::task::spawn_blocking(move || {
            let mut open: Option<(String, File)> = None;
            let mut out = Vec::with_capacity(ranges.len());
            for (key, range) in ranges {
                let context = || format!("reading {key} at {range:?}");
                let file = match open {
                    Some((ref k, ref f)) if *k == key => f,
                    _ => {
                        let path = fs.path_to_filesystem(&ObjectPath::from(key.as_str()))?;
                        let f = File::open(&path).with_context(context)?;
                        &open.insert((key.clone(), f)).1
                    }
                };
                let len = range
                    .end
                    .checked_sub(range.start)
                    .and_then(|n| usize::try_from(n).ok())
                    .with_context(|| format!("{}: not a range", context()))?;
                out.push(pread_exact(file, range.start, len).with_context(context)?);
            }
            Ok(out)
        })
        .await?
    }

    /// The whole object, or none if there is no such object.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match self.store.get(&ObjectPath::from(key)).await {
            Ok(got) => Ok(Some(
                got.bytes()
                    .await
                    .with_context(|| format!("reading {key}"))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {key}")),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting {key}")),
        }
    }

    /// Deletes every object under `prefix` (a directory's worth). On the
    /// local disk the directory goes whole, with the temporary files of
    /// writes a crash cut short, which listing does not show.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        if let Some(fs) = &self.local {
            let dir = fs.path_to_filesystem(&ObjectPath::from(prefix))?;
            return match tokio::fs::remove_dir_all(&dir).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("deleting {}", dir.display()))
                }
                _ => Ok(()),
            };
        }
        let keys: Vec<String> = self.list(prefix).map_ok(|(k, _)| k).try_collect().await?;
        for key in keys {
            self.delete(&key).await?;
        }
        Ok(())
    }

    /// Every object under `prefix` with its last-modified time (Unix seconds).
    pub fn list(&self, prefix: &str) -> BoxStream<'static, Result<(String, i64)>> {
        self.store
            .list(Some(&ObjectPath::from(prefix)))
            .map(|m| {
                let m = m?;
                Ok((m.location.to_string(), m.last_modified.timestamp()))
            })
            .boxed()
    }
}

/// `len` bytes of `file` from `offset`, or an error if the file is shorter.
/// Written with `pread(2)` because std cannot yet read at an offset into
/// uninitialised memory (`read_buf_at` is unstable), and zero-filling each
/// buffer first is measurable on the pull path.
fn pread_exact(file: &File, offset: u64, len: usize) -> std::io::Result<Bytes> {
    let mut buf = Vec::<u8>::with_capacity(len);
    while buf.len() < len {
        let filled = buf.len();
        let at = libc::off_t::try_from(offset + filled as u64)
            .map_err(|_| std::io::Error::other("offset out of range"))?;
        // SAFETY: the kernel writes at most `len - filled` bytes into the
        // vector's spare capacity, which starts at `filled` and is that long.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buf.as_mut_ptr().add(filled).cast(),
                len - filled,
                at,
            )
        };
        match n {
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the object is shorter",
                ))
            }
            n if n < 0 => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            // SAFETY: pread initialised the `n` bytes after `filled`.
            n => unsafe { buf.set_len(filled + n as usize) },
        }
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_ranges_reads_what_get_range_reads_and_refuses_short_objects() {
        let dir = std::env::temp_dir().join(format!("provenix-storage-{}", std::process::id()));
        let storage = Storage::from_config(&StorageConfig::Local { path: dir.clone() }).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        storage
            .put_parts("packs/a", vec![Bytes::from(data.clone())])
            .await
            .unwrap();
        storage
            .put_parts("packs/b", vec![Bytes::from_static(b"0123456789")])
            .await
            .unwrap();
        let ranges = vec![
            ("packs/a".to_string(), 0..10),
            ("packs/a".to_string(), 50_000..100_000),
            ("packs/b".to_string(), 3..7),
            ("packs/a".to_string(), 99_999..100_000),
        ];
        let got = storage.read_ranges(ranges.clone()).await.unwrap();
        for ((key, range), bytes) in ranges.into_iter().zip(got) {
            assert_eq!(bytes, storage.get_range(&key, range).await.unwrap());
        }
        let short = storage
            .read_ranges(vec![("packs/b".to_string(), 5..11)])
            .await
            .unwrap_err();
        assert!(format!("{short:#}").contains("shorter"), "{short:#}");
        let missing = storage
            .read_ranges(vec![("packs/none".to_string(), 0..1)])
            .await
            .unwrap_err();
        assert!(format!("{missing:#}").contains("packs/none"), "{missing:#}");
        #[allow(clippy::reversed_empty_ranges)]
        let inverted = storage
            .read_ranges(vec![("packs/a".to_string(), 10..5)])
            .await
            .unwrap_err();
        assert!(
            format!("{inverted:#}").contains("not a range"),
            "{inverted:#}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
