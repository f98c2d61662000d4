//! Store paths in caches, and the one transaction that makes an upload visible.

use sqlx::Row;

use super::{placeholders, Db, BATCH};

#[derive(Debug, Clone)]
pub struct ObjectRow {
    pub id: i64,
    pub store_path: String,
    pub nar_id: i64,
    pub nar_hash: String,
    pub nar_size: i64,
    pub compression: String,
    pub file_size: i64,
    /// References as stored (a JSON array): parsed only when a narinfo is
    /// rendered, not on every lookup (most narinfo requests are served from
    /// the memo of signed bodies).
    pub refs_json: String,
    pub deriver: Option<String>,
    pub ca: Option<String>,
    pub last_accessed_at: i64,
}

impl ObjectRow {
    pub fn refs(&self) -> Vec<String> {
        serde_json::from_str(&self.refs_json).unwrap_or_default()
    }
}

/// A chunk of an upload as the ingest pipeline left it.
#[derive(Debug, Clone)]
pub enum ChunkSource {
    /// Written to storage by this upload: `file_size` bytes at `offset` of
    /// the pack `object_key`.
    New {
        object_key: std::sync::Arc<str>,
        offset: i64,
        file_size: i64,
    },
    /// Already in the database when the upload saw it.
    Existing { id: i64 },
    /// Repeats a chunk seen earlier in the same upload (stored once).
    Duplicate,
}

#[derive(Debug, Clone)]
pub struct IngestedChunk {
    /// BLAKE3 of the uncompressed chunk (`chunk_hash.rs`; binary: an upload
    /// holds one of these per chunk until its commit).
    pub hash: [u8; 32],
    pub size: i64,
    pub source: ChunkSource,
}

/// A page of a NAR's chunk locations, in order (columns by position).
pub(super) const NAR_CHUNKS_SQL: &str = "SELECT c.object_key, c.object_offset, c.file_size
     FROM nar_chunks nc JOIN chunks c ON nc.chunk_id = c.id
     WHERE nc.nar_id = $1 AND nc.seq >= $2 ORDER BY nc.seq LIMIT $3";

/// Where a stored chunk's bytes are: `file_size` bytes at `offset` of the
/// object `object_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkLocation {
    pub object_key: String,
    pub offset: i64,
    pub file_size: i64,
}

#[derive(Debug)]
pub struct NewObject {
    pub cache_id: i64,
    pub store_path_hash: String,
    pub store_path: String,
    pub nar_hash: String,
    pub nar_size: i64,
    pub refs: Vec<String>,
    pub deriver: Option<String>,
    pub ca: Option<String>,
    pub witness: Witness,
}

/// Who vouches for an upload: the short-term key (its row id) and the
/// exact statement it signed. Recorded with every outcome.
#[derive(Debug, Clone)]
pub struct Witness {
    pub signing_key_row: i64,
    pub statement: String,
    pub signature: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    Created,
    /// The cache already holds this path with this NAR.
    AlreadyPresent,
    /// The key was revoked before the commit: nothing was made visible.
    KeyRevoked,
    /// The cache holds this path with another NAR hash.
    Conflict {
        existing_nar_hash: String,
    },
    /// A chunk this upload relied on was claimed by GC meanwhile; retry.
    ChunkGone,
}

/// `id_column`: what the object's id is called in a row that joins more.
pub(super) fn object_from_row(
    r: &sqlx::any::AnyRow,
    id_column: &str,
) -> Result<ObjectRow, sqlx::Error> {
    Ok(ObjectRow {
        id: r.try_get(id_column)?,
        store_path: r.try_get("store_path")?,
        nar_id: r.try_get("nar_id")?,
        nar_hash: r.try_get("nar_hash")?,
        nar_size: r.try_get("nar_size")?,
        compression: r.try_get("compression")?,
        file_size: r.try_get("file_size")?,
        refs_json: r.try_get("refs")?,
        deriver: r.try_get("deriver")?,
        ca: r.try_get("ca")?,
        last_accessed_at: r.try_get("last_accessed_at")?,
    })
}

impl Db {
    /// Marks a path as accessed, for retention-based GC.
    pub async fn touch_object(&self, id: i64, now: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE objects SET last_accessed_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Of `hashes`, those the cache does not hold.
    pub async fn missing_paths(
        &self,
        cache_id: i64,
        hashes: &[String],
    ) -> Result<Vec<String>, sqlx::Error> {
        let mut present = std::collections::HashSet::new();
        for batch in hashes.chunks(BATCH) {
            let sql = format!(
                "SELECT store_path_hash FROM objects WHERE cache_id = $1 AND store_path_hash IN ({})",
                placeholders(2, batch.len())
            );
            let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind(cache_id);
            for h in batch {
                q = q.bind(h);
            }
            present.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(hashes
            .iter()
            .filter(|h| !present.contains(*h))
            .cloned()
            .collect())
    }

    pub async fn nar_id_by_hash(&self, nar_hash: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT id FROM nars WHERE nar_hash = $1")
            .bind(nar_hash)
            .fetch_optional(&self.pool)
            .await
    }

    /// Names of the caches that hold a NAR (for the proof-of-possession rule).
    pub async fn caches_holding_nar(
        &self,
        nar_id: i64,
    ) -> Result<Vec<super::caches::CacheRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT DISTINCT c.id, c.name, c.is_public, c.priority, c.store_dir, c.upstream_cache_key_names, c.retention_period
             FROM objects o JOIN caches c ON o.cache_id = c.id WHERE o.nar_id = $1",
        )
        .bind(nar_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(super::caches::cache_from_row).collect()
    }

    /// Up to `limit` chunks of a NAR from position `from` on, in order.
    pub async fn nar_chunks(
        &self,
        nar_id: i64,
        from: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<ChunkLocation>> {
        if let Some(reader) = self.sqlite_reader.clone() {
            // A page is ~1,000 rows: one blocking-pool hop, not sqlx's
            // worker-thread round trip (a tenth of a pull's CPU).
            return tokio::task::spawn_blocking(move || reader.nar_chunks(nar_id, from, limit))
                .await?;
        }
        let rows = sqlx::query(NAR_CHUNKS_SQL)
            .bind(nar_id)
            .bind(from)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let chunks = rows
            .iter()
            .map(|r| {
                Ok(ChunkLocation {
                    object_key: r.try_get(0)?,
                    offset: r.try_get(1)?,
                    file_size: r.try_get(2)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(chunks)
    }

    pub async fn delete_object(
        &self,
        cache_id: i64,
        store_path_hash: &str,
    ) -> Result<bool, sqlx::Error> {
        let r = sqlx::query("DELETE FROM objects WHERE cache_id = $1 AND store_path_hash = $2")
            .bind(cache_id)
            .bind(store_path_hash)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// If the cache already has the path, records this statement as another
    /// witness (same NAR) or as a divergence (other NAR) and says which.
    /// The same rule the commit applies, asked before any NAR is read.
    pub async fn path_outcome(
        &self,
        obj: &NewObject,
    ) -> Result<Option<CommitOutcome>, sqlx::Error> {
        {
            let mut conn = self.pool.acquire().await?;
            if existing_outcome(&mut conn, obj).await?.is_none() {
                return Ok(None);
            }
        }
        let mut tx = self.begin_write().await?;
        let outcome = existing_outcome(&mut tx, obj).await?;
        if let Some(o) = &outcome {
            record_existing(&mut tx, obj, o).await?;
            tx.commit().await?;
        }
        Ok(outcome)
    }

    /// Records a path whose NAR the server already holds: no chunks move.
    pub async fn commit_existing_nar(
        &self,
        obj: &NewObject,
        nar_id: i64,
    ) -> Result<CommitOutcome, sqlx::Error> {
        let mut tx = self.begin_write().await?;
        if let Some(outcome) = existing_outcome(&mut tx, obj).await? {
            record_existing(&mut tx, obj, &outcome).await?;
            tx.commit().await?;
            return Ok(outcome);
        }
        let outcome = insert_object(&mut tx, obj, nar_id, "deduplicated").await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// The single transaction that makes an upload visible: chunk rows, the
    /// NAR and its chunk list, and the path. All or nothing; batched so that
    /// a NAR costs a handful of statements, not one per chunk.
    pub async fn commit_upload(
        &self,
        obj: &NewObject,
        compression: &str,
        chunks: &[IngestedChunk],
    ) -> Result<CommitOutcome, sqlx::Error> {
        let now = crate::clock::now();
        let mut tx = self.begin_write().await?;
        if let Some(outcome) = existing_outcome(&mut tx, obj).await? {
            record_existing(&mut tx, obj, &outcome).await?;
            tx.commit().await?;
            return Ok(outcome);
        }
        let existing_nar: Option<i64> =
            sqlx::query_scalar("SELECT id FROM nars WHERE nar_hash = $1")
                .bind(&obj.nar_hash)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(nar_id) = existing_nar {
            // Another upload stored this NAR meanwhile: ours becomes garbage.
            let outcome = insert_object(&mut tx, obj, nar_id, "uploaded").await?;
            tx.commit().await?;
            return Ok(outcome);
        }

        // Each distinct chunk appears once as New or Existing (its repeats
        // are Duplicate). Indices into `chunks`, not copies: a NAR of a few
        // GiB has tens of thousands of chunks, and this runs at peak memory.
        let mut new: Vec<u32> = Vec::new();
        let mut existing: Vec<i64> = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            match &c.source {
                ChunkSource::New { .. } => new.push(i as u32),
                ChunkSource::Existing { id } => existing.push(*id),
                ChunkSource::Duplicate => {}
            }
        }
        let distinct = new.len() + existing.len();
        // Concurrent commits lock shared chunk rows in one global order
        // (hash, then id), so two uploads never wait on each other in a cycle.
        new.sort_unstable_by_key(|&i| chunks[i as usize].hash);
        existing.sort_unstable();
        // (hash, id, file_size) of every distinct chunk, sorted by hash once
        // complete: a third of the memory of a hash map.
        let mut ids: Vec<([u8; 32], i64, i64)> = Vec::with_capacity(distinct);
        let mut note = |r: &sqlx::any::AnyRow| -> Result<(), sqlx::Error> {
            let hash: String = r.try_get("chunk_hash")?;
            let digest = crate::push::chunk_hash::from_text(&hash)
                .ok_or_else(|| sqlx::Error::Decode(format!("not a chunk hash: {hash:?}").into()))?;
            ids.push((digest, r.try_get("id")?, r.try_get("file_size")?));
            Ok(())
        };
        for batch in new.chunks(BATCH / 9) {
            let values: Vec<String> = (0..batch.len())
                .map(|i| format!("({})", self.backend.placeholders(1 + i * 9, 9)))
                .collect();
            let sql = format!(
                "INSERT INTO chunks (chunk_hash, compression, chunk_size, file_size, object_key, object_offset, state, last_used_at, created_at)
                 VALUES {} ON CONFLICT (chunk_hash, compression)
                 DO UPDATE SET last_used_at = excluded.last_used_at WHERE chunks.state = 'valid'
                 RETURNING id, chunk_hash, file_size",
                values.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for &i in batch {
                let c = &chunks[i as usize];
                let ChunkSource::New {
                    object_key,
                    offset,
                    file_size,
                } = &c.source
                else {
                    unreachable!("only new chunks are indexed here");
                };
                q = q
                    .bind(crate::push::chunk_hash::to_text(&c.hash))
                    .bind(compression)
                    .bind(c.size)
                    .bind(*file_size)
                    .bind(&**object_key)
                    .bind(*offset)
                    .bind("valid")
                    .bind(now)
                    .bind(now);
            }
            for r in q.fetch_all(&mut *tx).await? {
                note(&r)?;
            }
        }
        for batch in existing.chunks(BATCH) {
            // `now` is written in: every parameter must be a placeholder.
            let sql = format!(
                "UPDATE chunks SET last_used_at = {now} WHERE state = 'valid' AND id IN ({})
                 RETURNING id, chunk_hash, file_size",
                self.backend.placeholders(1, batch.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in batch {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&mut *tx).await? {
                note(&r)?;
            }
        }
        // A row missing here was claimed by GC meanwhile (or was never valid).
        if ids.len() != distinct {
            return Ok(CommitOutcome::ChunkGone);
        }
        ids.sort_unstable_by_key(|e| e.0);
        let row = |hash: &[u8; 32]| -> Result<(i64, i64), sqlx::Error> {
            let i = ids
                .binary_search_by(|e| e.0.cmp(hash))
                .map_err(|_| sqlx::Error::Protocol("a chunk row went missing".into()))?;
            Ok((ids[i].1, ids[i].2))
        };
        let mut file_size = 0i64;
        for c in chunks {
            file_size += row(&c.hash)?.1;
        }
        // A concurrent upload of the same NAR may insert it first (PostgreSQL
        // runs both transactions at once): then ours refers to theirs.
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO nars (nar_hash, nar_size, compression, file_size, num_chunks, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (nar_hash) DO NOTHING RETURNING id",
        )
        .bind(&obj.nar_hash)
        .bind(obj.nar_size)
        .bind(compression)
        .bind(file_size)
        .bind(chunks.len() as i64)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(nar_id) = inserted else {
            let nar_id: i64 = sqlx::query_scalar("SELECT id FROM nars WHERE nar_hash = $1")
                .bind(&obj.nar_hash)
                .fetch_one(&mut *tx)
                .await?;
            let outcome = insert_object(&mut tx, obj, nar_id, "uploaded").await?;
            tx.commit().await?;
            return Ok(outcome);
        };
        for (n, batch) in chunks.chunks(BATCH / 4).enumerate() {
            let values: Vec<String> = (0..batch.len())
                .map(|i| format!("({})", self.backend.placeholders(1 + i * 3, 3)))
                .collect();
            let sql = format!(
                "INSERT INTO nar_chunks (nar_id, seq, chunk_id) VALUES {}",
                values.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (i, c) in batch.iter().enumerate() {
                q = q
                    .bind(nar_id)
                    .bind((n * (BATCH / 4) + i) as i64)
                    .bind(row(&c.hash)?.0);
            }
            q.execute(&mut *tx).await?;
        }
        let outcome = insert_object(&mut tx, obj, nar_id, "uploaded").await?;
        tx.commit().await?;
        Ok(outcome)
    }
}

async fn existing_outcome(
    conn: &mut sqlx::AnyConnection,
    obj: &NewObject,
) -> Result<Option<CommitOutcome>, sqlx::Error> {
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT n.nar_hash FROM objects o JOIN nars n ON o.nar_id = n.id
         WHERE o.cache_id = $1 AND o.store_path_hash = $2",
    )
    .bind(obj.cache_id)
    .bind(&obj.store_path_hash)
    .fetch_optional(conn)
    .await?;
    Ok(existing.map(|h| {
        if h == obj.nar_hash {
            CommitOutcome::AlreadyPresent
        } else {
            CommitOutcome::Conflict {
                existing_nar_hash: h,
            }
        }
    }))
}

/// Appends the statement to the path's provenance (`outcome`: uploaded,
/// deduplicated or exists).
async fn record_upload(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    obj: &NewObject,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO uploads (cache_id, store_path_hash, store_path, nar_hash, nar_size,
             signing_key_id, statement, signature, outcome, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(obj.cache_id)
    .bind(&obj.store_path_hash)
    .bind(&obj.store_path)
    .bind(&obj.nar_hash)
    .bind(obj.nar_size)
    .bind(obj.witness.signing_key_row)
    .bind(&obj.witness.statement)
    .bind(&obj.witness.signature)
    .bind(outcome)
    .bind(crate::clock::now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The cache already has the path: a second witness, or a divergence.
async fn record_existing(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    obj: &NewObject,
    outcome: &CommitOutcome,
) -> Result<(), sqlx::Error> {
    match outcome {
        CommitOutcome::AlreadyPresent => record_upload(tx, obj, "exists").await,
        CommitOutcome::Conflict { existing_nar_hash } => {
            sqlx::query(
                "INSERT INTO divergences (cache_id, store_path_hash, store_path, existing_nar_hash,
                     nar_hash, nar_size, signing_key_id, statement, signature, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(obj.cache_id)
            .bind(&obj.store_path_hash)
            .bind(&obj.store_path)
            .bind(existing_nar_hash)
            .bind(&obj.nar_hash)
            .bind(obj.nar_size)
            .bind(obj.witness.signing_key_row)
            .bind(&obj.witness.statement)
            .bind(&obj.witness.signature)
            .bind(crate::clock::now())
            .execute(&mut **tx)
            .await?;
            Ok(())
        }
        _ => Ok(()),
    }
}

async fn insert_object(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    obj: &NewObject,
    nar_id: i64,
    outcome: &str,
) -> Result<CommitOutcome, sqlx::Error> {
    // Re-checked inside the transaction: a revocation committed after the
    // request's check must still stop the path becoming visible. On
    // PostgreSQL the row lock orders this commit against a concurrent
    // revocation's update of the key (SQLite's write lock already does).
    let guard = if tx.backend_name() == "PostgreSQL" {
        "SELECT revocation_id FROM signing_keys WHERE id = $1 FOR SHARE"
    } else {
        "SELECT revocation_id FROM signing_keys WHERE id = $1"
    };
    let revoked: Option<i64> = sqlx::query_scalar(guard)
        .bind(obj.witness.signing_key_row)
        .fetch_one(&mut **tx)
        .await?;
    if revoked.is_some() {
        return Ok(CommitOutcome::KeyRevoked);
    }
    let now = crate::clock::now();
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO objects (cache_id, store_path_hash, store_path, nar_id, refs, deriver, ca, sigs, created_at, last_accessed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (cache_id, store_path_hash) DO NOTHING RETURNING id",
    )
    .bind(obj.cache_id)
    .bind(&obj.store_path_hash)
    .bind(&obj.store_path)
    .bind(nar_id)
    .bind(serde_json::to_string(&obj.refs).unwrap_or_else(|_| "[]".into()))
    .bind(obj.deriver.as_deref())
    .bind(obj.ca.as_deref())
    .bind("[]")
    .bind(now)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    if id.is_some() {
        record_upload(tx, obj, outcome).await?;
        return Ok(CommitOutcome::Created);
    }
    // A concurrent upload of the same path won the race.
    let existing = existing_outcome(tx, obj)
        .await?
        .unwrap_or(CommitOutcome::AlreadyPresent);
    record_existing(tx, obj, &existing).await?;
    Ok(existing)
}
