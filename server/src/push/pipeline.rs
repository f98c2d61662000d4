//! The upload pipeline: a NAR stream is cut into content-defined chunks
//! (FastCDC), each chunk is hashed, looked up, compressed (zstd) and stored in
//! parallel, while the whole stream is hashed and validated in order. Nothing
//! here touches what clients can see: `Db::commit_upload` does that, once,
//! after every check has passed.

use aws_lc_rs::digest::{self, SHA256};
use bytes::Bytes;
use fastcdc::v2020::AsyncStreamCDC;
use futures::TryStreamExt;
use provenix_provenance::nar::{NarError, NarValidator};
use provenix_provenance::NarHash;
use rand::RngCore;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::config::ChunkingConfig;
use crate::db::commit::{ChunkSource, IngestedChunk};
use crate::db::Db;
use crate::push::chunk_hash;
use crate::storage::Storage;

#[derive(Debug, Error)]
pub enum IngestError {
    #[error("the NAR is malformed: {0}")]
    Nar(#[from] NarError),
    #[error(
        "NAR hash mismatch: the statement says {expected}, the uploaded NAR hashes to {actual}"
    )]
    HashMismatch { expected: String, actual: String },
    #[error("NAR size mismatch: the statement says {expected} bytes, {actual} were uploaded")]
    SizeMismatch { expected: u64, actual: String },
    #[error("reading the upload failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage: {0:#}")]
    Storage(anyhow::Error),
    #[error("{0}")]
    Db(#[from] crate::db::DbError),
    #[error("database: {0:#}")]
    DbRead(anyhow::Error),
}

/// A pipeline task that panicked or was cancelled ends the upload like a
/// broken stream does.
impl From<tokio::task::JoinError> for IngestError {
    fn from(e: tokio::task::JoinError) -> Self {
        IngestError::Io(std::io::Error::other(e))
    }
}

#[derive(Clone)]
pub struct Ingestor {
    pub db: Db,
    pub storage: Storage,
    pub chunking: ChunkingConfig,
    /// zstd level, or None to store chunks uncompressed.
    pub zstd_level: Option<i32>,
}

pub struct Ingested {
    pub chunks: Vec<IngestedChunk>,
    pub compression: &'static str,
    /// Deletes the packs this upload stored if dropped before
    /// [`Ingested::keep_packs`]: an upload refused after its stream ended
    /// leaves nothing behind either.
    packs: AbandonOnDrop,
}

impl Ingested {
    /// Called just before the commit, which may make rows name the packs:
    /// from then on only GC may delete them.
    pub fn keep_packs(&mut self) {
        self.packs.armed = false;
    }
}

/// What a chunk is stored as, which is also what a NAR is served as.
pub fn compression_name(level: Option<i32>) -> &'static str {
    if level.is_some() {
        "zstd"
    } else {
        "none"
    }
}

/// The chunks an upload has seen so far, by the first 128 bits of their
/// hash: half the memory of whole hashes (this set grows with the NAR:
/// 0.6 MiB at 2 GiB in heaptrack). A collision (odds ~n²/2¹²⁹) would mark a new chunk as seen;
/// the commit then finds no row for its full hash and fails the upload
/// ("a chunk row went missing"), so it can never store a wrong NAR.
type SeenChunks = HashSet<u128>;

fn seen_key(digest: &[u8; 32]) -> u128 {
    u128::from_le_bytes(digest[..16].try_into().expect("16 bytes"))
}

/// What the parallel stage made of a chunk.
enum Prepared {
    /// Seen earlier in this upload.
    Duplicate,
    /// Already stored (id of its row).
    Existing(i64),
    /// New: compressed, to be packed.
    New(Bytes),
}

/// Where a chunk stands after the blocking part of `prepare_chunk`.
enum Step {
    Done(Prepared),
    /// Hashed only: the dedup lookup is asynchronous (PostgreSQL).
    Hashed(Bytes),
}

/// New chunks of an upload are stored together, in NAR order, in objects of
/// about this size (the last one smaller). One object per chunk meant ~8,000
/// file creations per 500 MB NAR (15% of a push's CPU on ext4) and as many
/// reads per pull; 4 MiB keeps a pull's reads large and an upload's buffer
/// small. Chunks are zstd frames, so a pack is itself a valid zstd stream.
pub const PACK_TARGET: usize = 4 * 1024 * 1024;

/// zstd contexts reused across chunks: creating one per chunk showed up in
/// profiles. A shared pool, not one per thread, because the blocking pool
/// may run many threads and each idle context holds a megabyte or two.
static COMPRESSORS: Mutex<Vec<(i32, zstd::bulk::Compressor<'static>)>> = Mutex::new(Vec::new());

/// Contexts kept idle: as many as chunks compress at once on a small server.
const IDLE_COMPRESSORS: usize = 4;

/// Compresses a chunk at `level`, or keeps it raw (None).
fn compress(level: Option<i32>, data: Bytes) -> Result<Bytes, IngestError> {
    let Some(level) = level else {
        return Ok(data);
    };
    let pooled = {
        let mut pool = COMPRESSORS.lock().expect("not poisoned");
        pool.iter()
            .position(|(l, _)| *l == level)
            .map(|i| pool.swap_remove(i).1)
    };
    let mut compressor = match pooled {
        Some(c) => c,
        None => zstd::bulk::Compressor::new(level)?,
    };
    let compressed = compressor.compress(&data);
    let mut pool = COMPRESSORS.lock().expect("not poisoned");
    if pool.len() < IDLE_COMPRESSORS {
        pool.push((level, compressor));
    }
    // The buffer was sized for the worst case (a bit over the input); a
    // pack holds about a hundred of these, and the unused halves were the
    // largest part of an upload's memory (glibc shrinks in place).
    let mut compressed = compressed?;
    compressed.shrink_to_fit();
    Ok(Bytes::from(compressed))
}

/// Collects an upload's new chunks into packs and stores each full pack
/// while the next fills; at most one store is in flight, so an upload holds
/// at most two packs in memory.
struct Packer {
    storage: Storage,
    ext: &'static str,
    key: Arc<str>,
    parts: Vec<Bytes>,
    len: usize,
    storing: Option<tokio::task::JoinHandle<Result<(), IngestError>>>,
    stored: Arc<Mutex<StoredPacks>>,
}

/// The packs an upload has stored, so that a refused or failed upload
/// deletes them at once instead of leaving them to GC's sweep (which stays
/// for crashes). A pack whose store finishes after the upload was abandoned
/// deletes itself.
#[derive(Default)]
struct StoredPacks {
    keys: Vec<Arc<str>>,
    abandoned: bool,
}

/// Deletes an upload's stored packs when dropped armed: on every way out of
/// `ingest` but success (an error, or the request going away mid-stream).
pub(crate) struct AbandonOnDrop {
    storage: Storage,
    stored: Arc<Mutex<StoredPacks>>,
    armed: bool,
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let keys = {
            let mut stored = self.stored.lock().expect("not poisoned");
            stored.abandoned = true;
            std::mem::take(&mut stored.keys)
        };
        if keys.is_empty() {
            return;
        }
        let storage = self.storage.clone();
        // No row names these packs (the commit never ran), so nothing can
        // be reading them.
        tokio::spawn(async move {
            for key in keys {
                if let Err(e) = storage.delete(&key).await {
                    tracing::warn!(pack = %key, "cannot delete a refused upload's pack (GC's sweep will): {e:#}");
                }
            }
        });
    }
}

impl Packer {
    fn new(storage: Storage, compressed: bool) -> Packer {
        let ext = if compressed { "zst" } else { "raw" };
        Packer {
            storage,
            ext,
            key: new_pack_key(ext),
            parts: Vec::new(),
            len: 0,
            storing: None,
            stored: Arc::default(),
        }
    }

    /// The guard that deletes this upload's packs unless disarmed.
    fn abandon_on_drop(&self) -> AbandonOnDrop {
        AbandonOnDrop {
            storage: self.storage.clone(),
            stored: self.stored.clone(),
            armed: true,
        }
    }

    /// Where a prepared chunk ends up: new ones are appended to the pack.
    async fn place(
        &mut self,
        (hash, size, prepared): ([u8; 32], i64, Prepared),
    ) -> Result<IngestedChunk, IngestError> {
        let source = match prepared {
            Prepared::Duplicate => ChunkSource::Duplicate,
            Prepared::Existing(id) => ChunkSource::Existing { id },
            Prepared::New(data) => self.add(data).await?,
        };
        Ok(IngestedChunk { hash, size, source })
    }

    /// Appends a chunk; returns where it will be stored.
    async fn add(&mut self, data: Bytes) -> Result<ChunkSource, IngestError> {
        let source = ChunkSource::New {
            pack_key: self.key.clone(),
            offset: self.len as i64,
            file_size: data.len() as i64,
        };
        self.len += data.len();
        self.parts.push(data);
        if self.len >= PACK_TARGET {
            self.flush().await?;
        }
        Ok(source)
    }

    /// Starts storing the current pack (after the previous one is stored).
    async fn flush(&mut self) -> Result<(), IngestError> {
        self.wait().await?;
        if self.parts.is_empty() {
            return Ok(());
        }
        let parts = std::mem::take(&mut self.parts);
        self.len = 0;
        let key = std::mem::replace(&mut self.key, new_pack_key(self.ext));
        let storage = self.storage.clone();
        let stored = self.stored.clone();
        self.storing = Some(tokio::spawn(async move {
            storage
                .put_parts(&key, parts)
                .await
                .map_err(IngestError::Storage)?;
            let abandoned = {
                let mut stored = stored.lock().expect("not poisoned");
                if !stored.abandoned {
                    stored.keys.push(key.clone());
                }
                stored.abandoned
            };
            if abandoned {
                if let Err(e) = storage.delete(&key).await {
                    tracing::warn!(pack = %key, "cannot delete a refused upload's pack (GC's sweep will): {e:#}");
                }
            }
            Ok(())
        }));
        Ok(())
    }

    async fn wait(&mut self) -> Result<(), IngestError> {
        match self.storing.take() {
            Some(handle) => handle.await?,
            None => Ok(()),
        }
    }

    /// Stores what is left and waits until every pack is stored.
    async fn finish(mut self) -> Result<(), IngestError> {
        self.flush().await?;
        self.wait().await
    }
}

/// A fresh key per pack: two uploads never write the same object, and GC
/// deletes exactly the object rows name.
fn new_pack_key(ext: &str) -> Arc<str> {
    let mut id = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut id);
    let id = hex::encode(id);
    format!("{PACK_PREFIX}/{}/{id}.{ext}", &id[..2]).into()
}

/// Packs are spread over 256 directories, `chunks/00` to `chunks/ff`, by
/// the first byte of their random id (`Storage` makes them up front).
pub const PACK_PREFIX: &str = "chunks";

/// The whole-stream checks (size, NAR syntax, NAR hash) in a task of their
/// own, fed the NAR's bytes in order. On the request task they were the
/// longest sequential step of a push (SHA-256 at ~1.3 GB/s here) and a core
/// sat idle while it ran.
struct StreamCheck {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    done: tokio::task::JoinHandle<Result<Checked, IngestError>>,
}

/// Bytes seen, whether they end as a complete NAR, and their SHA-256.
type Checked = (u64, Result<(), NarError>, NarHash);

impl StreamCheck {
    fn start() -> StreamCheck {
        // A few chunks of slack: the checker keeps pace, and a malformed NAR
        // stops the upload within these.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
        let done = tokio::spawn(async move {
            // SHA-256 from aws-lc (already linked for TLS and JWTs): its code
            // took about 4% less server CPU per push than the sha2 crate.
            let mut state = (digest::Context::new(&SHA256), NarValidator::new(), 0u64);
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, 16).await > 0 {
                // Hashing on the async workers competed with the request
                // task and hyper (pushes 4% slower); one blocking hop per
                // batch, not per chunk, and no thread held while idle.
                let pieces = std::mem::take(&mut batch);
                state = tokio::task::spawn_blocking(move || {
                    let (mut hasher, mut validator, mut total) = state;
                    for data in pieces {
                        hasher.update(&data);
                        validator.feed(&data)?;
                        total += data.len() as u64;
                    }
                    Ok::<_, IngestError>((hasher, validator, total))
                })
                .await??;
            }
            let (hasher, validator, total) = state;
            let hash = NarHash(hasher.finish().as_ref().try_into().expect("32 bytes"));
            Ok((total, validator.finish(), hash))
        });
        StreamCheck { tx, done }
    }

    /// Passes the next bytes on; an error if the checker stopped (at a
    /// malformed NAR: `finish` returns its error).
    async fn send(tx: &tokio::sync::mpsc::Sender<Bytes>, data: Bytes) -> Result<(), IngestError> {
        if tx.send(data).await.is_err() {
            // The checker only stops early on an error, which `done` holds;
            // the upload ends here, so waiting for it is immediate.
            return Err(IngestError::Io(std::io::Error::other(
                "the NAR checker stopped",
            )));
        }
        Ok(())
    }

    async fn finish(self) -> Result<Checked, IngestError> {
        drop(self.tx);
        self.done.await?
    }
}

impl Ingestor {
    pub async fn ingest<R: AsyncRead + Unpin + Send>(
        &self,
        reader: R,
        expected_hash: &NarHash,
        expected_size: u64,
    ) -> Result<Ingested, IngestError> {
        // Never read more than one byte past the declared size.
        let reader = reader.take(expected_size.saturating_add(1));
        let compression = compression_name(self.zstd_level);
        // Asked once: the standard library reads cgroup files each time,
        // a measurable part of a small upload's CPU.
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let cores = *CORES.get_or_init(|| {
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, 8)
        });
        // Two chunks per core on the blocking pool at once (each holds a
        // zstd context while it compresses), but a window of many more:
        // results return in NAR order and chunk sizes vary sixteenfold, so
        // with a window as narrow as the work the cores idled behind one
        // large chunk (pushes about 8% slower in alternating A/B runs).
        let working = Arc::new(tokio::sync::Semaphore::new(cores * 2));
        let window = cores * 8;
        let seen: Arc<Mutex<SeenChunks>> = Arc::default();
        let check = StreamCheck::start();

        // Hashing, dedup and compression run on several chunks at once; the
        // results come back in NAR order and are packed in that order, so a
        // pull reads a NAR's new chunks as a few large sequential ranges.
        let mut packer = Packer::new(self.storage.clone(), self.zstd_level.is_some());
        let abandon = packer.abandon_on_drop();
        // Room for the chunks the declared size likely cuts into (FastCDC's
        // cuts average `avg_size`), plus a margin: growing by doubling held
        // two copies at once. Not room for the most it could cut into: that
        // allocation could come from pages the heap already holds resident.
        let likely = expected_size / self.chunking.avg_size.max(1) as u64 * 5 / 4 + 1;
        let mut chunks = Vec::with_capacity(likely.min(1 << 20) as usize);
        let streamed = async {
            if expected_size < self.chunking.nar_size_threshold as u64 {
                // Small NARs are one chunk: chunking them would only add rows.
                let mut data = Vec::with_capacity(expected_size as usize + 1);
                let mut reader = reader;
                reader.read_to_end(&mut data).await?;
                let data = Bytes::from(data);
                StreamCheck::send(&check.tx, data.clone()).await?;
                if !data.is_empty() {
                    let prepared = self.prepare_chunk(data, seen.clone(), &working).await?;
                    chunks.push(packer.place(prepared).await?);
                }
            } else {
                let mut cdc = AsyncStreamCDC::new(
                    reader,
                    self.chunking.min_size,
                    self.chunking.avg_size,
                    self.chunking.max_size,
                );
                let tx = check.tx.clone();
                let prepared = cdc
                    .as_stream()
                    .map_err(|e| match e {
                        fastcdc::v2020::Error::IoError(io) => IngestError::Io(io),
                        other => IngestError::Io(std::io::Error::other(other.to_string())),
                    })
                    .and_then(|chunk| {
                        let data = Bytes::from(chunk.data);
                        let tx = tx.clone();
                        // Owned, not borrowed: a future borrowing `self` from
                        // inside this closure fails the Send check axum needs.
                        let ingestor = self.clone();
                        let seen = seen.clone();
                        let working = working.clone();
                        async move {
                            StreamCheck::send(&tx, data.clone()).await?;
                            Ok(async move { ingestor.prepare_chunk(data, seen, &working).await })
                        }
                    })
                    .try_buffered(window);
                let mut prepared = std::pin::pin!(prepared);
                while let Some(p) = prepared.try_next().await? {
                    chunks.push(packer.place(p).await?);
                }
            }
            packer.finish().await
        }
        .await;
        // A malformed NAR stops the checker, and then the stream: its error
        // is the one to report.
        let checked = check.finish().await;
        if let Err(e) = streamed {
            return Err(checked.err().unwrap_or(e));
        }
        let (total, syntax, actual) = checked?;
        if total != expected_size {
            let actual = if total > expected_size {
                format!("more than {expected_size}")
            } else {
                total.to_string()
            };
            return Err(IngestError::SizeMismatch {
                expected: expected_size,
                actual,
            });
        }
        syntax?;
        if &actual != expected_hash {
            return Err(IngestError::HashMismatch {
                expected: expected_hash.to_nix_string(),
                actual: actual.to_nix_string(),
            });
        }
        Ok(Ingested {
            chunks,
            compression,
            packs: abandon,
        })
    }

    /// Hashes a chunk, looks it up and compresses it if it is new.
    async fn prepare_chunk(
        &self,
        data: Bytes,
        seen: Arc<Mutex<SeenChunks>>,
        working: &tokio::sync::Semaphore,
    ) -> Result<([u8; 32], i64, Prepared), IngestError> {
        let _turn = working.acquire().await.expect("never closed");
        let size = data.len() as i64;
        let level = self.zstd_level;
        let compression = compression_name(level);
        // Hashing, the dedup lookup (on SQLite, a microsecond read done in
        // place) and compression in one blocking task: a thread hop per step
        // per chunk was a tenth of a push's CPU.
        let reader = self.db.in_place_chunk_lookup();
        let (digest, step) =
            tokio::task::spawn_blocking(move || -> Result<([u8; 32], Step), IngestError> {
                let digest = chunk_hash::digest(&data);
                if !seen.lock().expect("not poisoned").insert(seen_key(&digest)) {
                    return Ok((digest, Step::Done(Prepared::Duplicate)));
                }
                let Some(reader) = reader else {
                    return Ok((digest, Step::Hashed(data)));
                };
                let found = reader
                    .valid_chunk(&chunk_hash::to_text(&digest), compression)
                    .map_err(IngestError::DbRead)?;
                let prepared = match found {
                    Some(id) => Prepared::Existing(id),
                    None => Prepared::New(compress(level, data)?),
                };
                Ok((digest, Step::Done(prepared)))
            })
            .await??;
        let prepared = match step {
            Step::Done(prepared) => prepared,
            Step::Hashed(data) => {
                match self
                    .db
                    .valid_chunk(&chunk_hash::to_text(&digest), compression)
                    .await?
                {
                    Some(id) => Prepared::Existing(id),
                    None => Prepared::New(
                        tokio::task::spawn_blocking(move || compress(level, data)).await??,
                    ),
                }
            }
        };
        Ok((digest, size, prepared))
    }
}
