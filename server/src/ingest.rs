//! The upload pipeline: a NAR stream is cut into content-defined chunks
//! (FastCDC), each chunk is hashed, looked up, compressed (zstd) and stored in
//! parallel, while the whole stream is hashed and validated in order. Nothing
//! here touches what clients can see: `Db::commit_upload` does that, once,
//! after every check has passed.

use bytes::Bytes;
use fastcdc::v2020::AsyncStreamCDC;
use futures::{StreamExt, TryStreamExt};
use provenix_provenance::nar::{NarError, NarValidator};
use provenix_provenance::NarHash;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::config::ChunkingConfig;
use crate::db::objects::{ChunkSource, IngestedChunk};
use crate::db::Db;
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
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database: {0:#}")]
    DbRead(anyhow::Error),
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
}

/// What a chunk is stored as, which is also what a NAR is served as.
pub fn compression_name(level: Option<i32>) -> &'static str {
    if level.is_some() {
        "zstd"
    } else {
        "none"
    }
}

/// Where a chunk stands after the blocking part of `store_chunk`.
enum Step {
    /// Seen earlier in this upload.
    Duplicate(String),
    /// Already stored (id of its row).
    Existing(String, i64),
    /// New, compressed, to be stored.
    Compressed(String, Bytes),
    /// Hashed only: the dedup lookup is asynchronous (PostgreSQL).
    Hashed(String, Vec<u8>),
}

/// zstd contexts reused across chunks: creating one per chunk showed up in
/// profiles. A shared pool, not one per thread, because the blocking pool
/// may run many threads and each idle context holds a megabyte or two.
static COMPRESSORS: Mutex<Vec<(i32, zstd::bulk::Compressor<'static>)>> = Mutex::new(Vec::new());

/// Contexts kept idle: as many as chunks compress at once on a small server.
const IDLE_COMPRESSORS: usize = 4;

/// Compresses a chunk at `level`, or keeps it raw (None).
fn compress(level: Option<i32>, data: Vec<u8>) -> Result<Bytes, IngestError> {
    let Some(level) = level else {
        return Ok(Bytes::from(data));
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
    Ok(Bytes::from(compressed?))
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
        let concurrency = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8)
            * 2;
        let claimed = Arc::new(Mutex::new(HashSet::new()));

        let mut hasher = Sha256::new();
        let mut validator = NarValidator::new();
        let mut total: u64 = 0;
        let mut observe = |data: &[u8]| -> Result<(), IngestError> {
            hasher.update(data);
            validator.feed(data)?;
            total += data.len() as u64;
            Ok(())
        };

        let chunks: Vec<IngestedChunk> = if expected_size < self.chunking.nar_size_threshold as u64
        {
            // Small NARs are one chunk: chunking them would only add rows.
            let mut data = Vec::with_capacity(expected_size as usize + 1);
            let mut reader = reader;
            reader.read_to_end(&mut data).await?;
            observe(&data)?;
            if data.is_empty() {
                vec![]
            } else {
                vec![self.store_chunk(data, claimed.clone()).await?]
            }
        } else {
            let mut cdc = AsyncStreamCDC::new(
                reader,
                self.chunking.min_size,
                self.chunking.avg_size,
                self.chunking.max_size,
            );
            let stream = cdc.as_stream();
            stream
                .map(|chunk| {
                    let chunk = chunk.map_err(|e| match e {
                        fastcdc::v2020::Error::IoError(io) => IngestError::Io(io),
                        other => IngestError::Io(std::io::Error::other(other.to_string())),
                    })?;
                    observe(&chunk.data)?;
                    Ok(self.store_chunk(chunk.data, claimed.clone()))
                })
                .try_buffered(concurrency)
                .try_collect()
                .await?
        };

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
        validator.finish()?;
        let actual = NarHash(hasher.finalize().into());
        if &actual != expected_hash {
            return Err(IngestError::HashMismatch {
                expected: expected_hash.to_nix_string(),
                actual: actual.to_nix_string(),
            });
        }
        Ok(Ingested {
            chunks,
            compression,
        })
    }

    async fn store_chunk(
        &self,
        data: Vec<u8>,
        claimed: Arc<Mutex<HashSet<[u8; 32]>>>,
    ) -> Result<IngestedChunk, IngestError> {
        let size = data.len() as i64;
        let level = self.zstd_level;
        let compression = compression_name(level);
        // Hashing, the dedup lookup (on SQLite, a microsecond read done in
        // place) and compression in one blocking task: a thread hop per step
        // per chunk was a tenth of a push's CPU.
        let reader = self.db.sqlite_reader.clone();
        let step = tokio::task::spawn_blocking(move || -> Result<Step, IngestError> {
            let digest: [u8; 32] = Sha256::digest(&data).into();
            let hash = hex::encode(digest);
            if !claimed.lock().expect("not poisoned").insert(digest) {
                return Ok(Step::Duplicate(hash));
            }
            let Some(reader) = reader else {
                return Ok(Step::Hashed(hash, data));
            };
            let found = reader
                .valid_chunk(&hash, compression)
                .map_err(IngestError::DbRead)?;
            match found {
                Some(id) => Ok(Step::Existing(hash, id)),
                None => Ok(Step::Compressed(hash, compress(level, data)?)),
            }
        })
        .await
        .map_err(|e| IngestError::Io(std::io::Error::other(e)))??;
        let (hash, stored) = match step {
            Step::Duplicate(hash) => {
                return Ok(IngestedChunk {
                    hash,
                    size,
                    source: ChunkSource::Duplicate,
                })
            }
            Step::Existing(hash, id) => {
                return Ok(IngestedChunk {
                    hash,
                    size,
                    source: ChunkSource::Existing { id },
                })
            }
            Step::Compressed(hash, stored) => (hash, stored),
            Step::Hashed(hash, data) => {
                if let Some(id) = self.db.valid_chunk(&hash, compression).await? {
                    return Ok(IngestedChunk {
                        hash,
                        size,
                        source: ChunkSource::Existing { id },
                    });
                }
                let stored = tokio::task::spawn_blocking(move || compress(level, data))
                    .await
                    .map_err(|e| IngestError::Io(std::io::Error::other(e)))??;
                (hash, stored)
            }
        };
        // A unique key per stored object: two uploads of a new chunk never
        // overwrite each other, and GC deletes exactly the object its row names.
        let mut nonce = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ext = if level.is_some() { "zst" } else { "raw" };
        let object_key = format!(
            "chunks/{}/{}-{}.{ext}",
            &hash[..2],
            hash,
            hex::encode(nonce)
        );
        let file_size = stored.len() as i64;
        self.storage
            .put(&object_key, stored)
            .await
            .map_err(IngestError::Storage)?;
        Ok(IngestedChunk {
            hash,
            size,
            source: ChunkSource::New {
                object_key,
                file_size,
            },
        })
    }
}
