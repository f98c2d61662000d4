//! The one transaction that makes an upload visible: chunk rows, the NAR
//! and its chunk list, the path, and its upload record in the ledger. Also
//! the shorter ones for a path the cache already has and for a NAR the
//! server already holds.

use provenix_provenance::upload::PathDescription;
use sqlx::Row;

use super::ledger;
use super::{Db, DbResult, BATCH};

/// A chunk of an upload as the ingest pipeline left it.
#[derive(Debug, Clone)]
pub enum ChunkSource {
    /// Written to storage by this upload: `file_size` bytes at `offset` of
    /// the pack `pack_key`.
    New {
        pack_key: std::sync::Arc<str>,
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

#[derive(Debug)]
pub struct NewPath {
    pub cache_id: i64,
    pub store_path_hash: String,
    pub store_path: String,
    pub nar_hash: String,
    pub nar_size: i64,
    pub refs: Vec<String>,
    pub deriver: Option<String>,
    pub ca: Option<String>,
    pub signed: SignedStatement,
}

/// Who vouches for an upload: the short-term key (its row id) and the
/// exact statement it signed. Recorded with every outcome.
#[derive(Debug, Clone)]
pub struct SignedStatement {
    pub upload_key_row: i64,
    pub statement: String,
    pub signature: String,
    /// The statement's nonce: recorded with it, so it records only once.
    pub nonce: String,
    /// Until when the nonce is remembered: after it the key can sign no
    /// upload the server accepts, so a replay is refused as expired.
    pub remember_until: i64,
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
    /// The cache holds this path with this NAR, but the statement describes
    /// it otherwise (`field`): refused, nothing recorded.
    Mismatch {
        field: &'static str,
    },
}

impl NewPath {
    fn description(&self) -> PathDescription {
        PathDescription {
            nar_hash: self.nar_hash.clone(),
            nar_size: self.nar_size,
            references: self.refs.clone(),
            deriver: self.deriver.clone(),
            ca: self.ca.clone(),
        }
    }
}

impl Db {
    /// If the cache already has the path, records this statement as another
    /// witness (same NAR) or as a divergence (other NAR) and says which.
    /// The same rule the commit applies, asked before any NAR is read.
    pub async fn record_if_present(&self, obj: &NewPath) -> DbResult<Option<CommitOutcome>> {
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
    pub async fn commit_existing_nar(&self, obj: &NewPath, nar_id: i64) -> DbResult<CommitOutcome> {
        let mut tx = self.begin_write().await?;
        if let Some(outcome) = existing_outcome(&mut tx, obj).await? {
            record_existing(&mut tx, obj, &outcome).await?;
            tx.commit().await?;
            return Ok(outcome);
        }
        let outcome = insert_path(&mut tx, self.backend, obj, nar_id, "deduplicated").await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// The single transaction that makes an upload visible: chunk rows, the
    /// NAR and its chunk list, and the path. All or nothing; batched so that
    /// a NAR costs a handful of statements, not one per chunk.
    pub async fn commit_upload(
        &self,
        obj: &NewPath,
        compression: &str,
        chunks: &[IngestedChunk],
    ) -> DbResult<CommitOutcome> {
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
            let outcome = insert_path(&mut tx, self.backend, obj, nar_id, "uploaded").await?;
            tx.commit().await?;
            return Ok(outcome);
        }

        let Some(rows) = chunk_rows(&mut tx, self.backend, compression, chunks, now).await? else {
            return Ok(CommitOutcome::ChunkGone);
        };
        let mut file_size = 0i64;
        for c in chunks {
            file_size += rows.get(&c.hash)?.1;
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
            let outcome = insert_path(&mut tx, self.backend, obj, nar_id, "uploaded").await?;
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
                    .bind(rows.get(&c.hash)?.0);
            }
            q.execute(&mut *tx).await?;
        }
        let outcome = insert_path(&mut tx, self.backend, obj, nar_id, "uploaded").await?;
        tx.commit().await?;
        Ok(outcome)
    }
}

/// The rows of every distinct chunk of an upload, sorted by hash: new ones
/// inserted (or, stored meanwhile by another upload, touched), known ones
/// touched. `None` when one was claimed by GC meanwhile (or never valid).
async fn chunk_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: super::Backend,
    compression: &str,
    chunks: &[IngestedChunk],
    now: i64,
) -> DbResult<Option<ChunkRows>> {
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
    let mut note = |r: &sqlx::any::AnyRow| -> DbResult<()> {
        let hash: String = r.try_get("chunk_hash")?;
        let digest = crate::push::chunk_hash::from_text(&hash)
            .ok_or_else(|| sqlx::Error::Decode(format!("not a chunk hash: {hash:?}").into()))?;
        ids.push((digest, r.try_get("id")?, r.try_get("file_size")?));
        Ok(())
    };
    for batch in new.chunks(BATCH / 9) {
        let values: Vec<String> = (0..batch.len())
            .map(|i| format!("({})", backend.placeholders(1 + i * 9, 9)))
            .collect();
        let sql = format!(
                "INSERT INTO chunks (chunk_hash, compression, chunk_size, file_size, pack_key, pack_offset, state, last_used_at, created_at)
                 VALUES {} ON CONFLICT (chunk_hash, compression)
                 DO UPDATE SET last_used_at = excluded.last_used_at WHERE chunks.state = 'valid'
                 RETURNING id, chunk_hash, file_size",
                values.join(", ")
            );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for &i in batch {
            let c = &chunks[i as usize];
            let ChunkSource::New {
                pack_key,
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
                .bind(&**pack_key)
                .bind(*offset)
                .bind("valid")
                .bind(now)
                .bind(now);
        }
        for r in q.fetch_all(&mut **tx).await? {
            note(&r)?;
        }
    }
    for batch in existing.chunks(BATCH) {
        // `now` is written in: every parameter must be a placeholder.
        let sql = format!(
            "UPDATE chunks SET last_used_at = {now} WHERE state = 'valid' AND id IN ({})
                 RETURNING id, chunk_hash, file_size",
            backend.placeholders(1, batch.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in batch {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut **tx).await? {
            note(&r)?;
        }
    }
    // A row missing here was claimed by GC meanwhile (or was never valid).
    if ids.len() != distinct {
        return Ok(None);
    }
    ids.sort_unstable_by_key(|e| e.0);
    Ok(Some(ChunkRows(ids)))
}

/// (hash, row id, stored size) of an upload's distinct chunks, by hash: a
/// third of the memory of a hash map, at the upload's peak.
struct ChunkRows(Vec<([u8; 32], i64, i64)>);

impl ChunkRows {
    /// (row id, stored size) of the chunk with `hash`.
    fn get(&self, hash: &[u8; 32]) -> DbResult<(i64, i64)> {
        let i = self
            .0
            .binary_search_by(|e| e.0.cmp(hash))
            .map_err(|_| sqlx::Error::Protocol("a chunk row went missing".into()))?;
        Ok((self.0[i].1, self.0[i].2))
    }
}

async fn existing_outcome(
    conn: &mut sqlx::AnyConnection,
    obj: &NewPath,
) -> DbResult<Option<CommitOutcome>> {
    let row = sqlx::query(
        "SELECT n.nar_hash, n.nar_size, o.refs, o.deriver, o.ca FROM paths o JOIN nars n ON o.nar_id = n.id
         WHERE o.cache_id = $1 AND o.store_path_hash = $2",
    )
    .bind(obj.cache_id)
    .bind(&obj.store_path_hash)
    .fetch_optional(conn)
    .await?;
    let Some(r) = row else {
        return Ok(None);
    };
    let stored = description_from_row(&r)?;
    if stored.nar_hash != obj.nar_hash {
        return Ok(Some(CommitOutcome::Conflict {
            existing_nar_hash: stored.nar_hash,
        }));
    }
    Ok(Some(match stored.first_difference(&obj.description()) {
        None => CommitOutcome::AlreadyPresent,
        Some(field) => CommitOutcome::Mismatch { field },
    }))
}

fn description_from_row(r: &sqlx::any::AnyRow) -> DbResult<PathDescription> {
    let refs: String = r.try_get("refs")?;
    Ok(PathDescription {
        nar_hash: r.try_get("nar_hash")?,
        nar_size: r.try_get("nar_size")?,
        references: serde_json::from_str(&refs).unwrap_or_default(),
        deriver: r.try_get("deriver")?,
        ca: r.try_get("ca")?,
    })
}

impl Db {
    /// Whether a statement recording a path on a NAR the server holds
    /// (without sending it) describes that NAR as stored: its size, and,
    /// where some cache holds the same store path on it, that path's
    /// references, deriver and CA. Otherwise the NAR must be sent.
    pub async fn existing_nar_fits(&self, obj: &NewPath, nar_id: i64) -> DbResult<bool> {
        let rows = sqlx::query(
            "SELECT n.nar_hash, n.nar_size, o.refs, o.deriver, o.ca FROM nars n
             JOIN paths o ON o.nar_id = n.id
             WHERE n.id = $1 AND o.store_path_hash = $2",
        )
        .bind(nar_id)
        .bind(&obj.store_path_hash)
        .fetch_all(&self.pool)
        .await?;
        let statement = obj.description();
        for r in &rows {
            if description_from_row(r)?
                .first_difference(&statement)
                .is_none()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The cache already has the path: another witness, or a divergence.
async fn record_existing(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    obj: &NewPath,
    outcome: &CommitOutcome,
) -> DbResult<()> {
    match outcome {
        CommitOutcome::AlreadyPresent => ledger::record_upload(tx, obj, "exists").await,
        CommitOutcome::Conflict { existing_nar_hash } => {
            ledger::record_divergence(tx, obj, existing_nar_hash).await
        }
        _ => Ok(()),
    }
}

/// Whether the upload key is revoked, asked inside the transaction that
/// would make its statement's effect visible: a revocation committed after
/// the request's check must still stop it. On PostgreSQL the row lock
/// orders this commit against a concurrent revocation's update of the key
/// (SQLite's write lock already does).
pub(super) async fn key_revoked(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: super::Backend,
    upload_key_row: i64,
) -> DbResult<bool> {
    let guard = if backend == super::Backend::Postgres {
        "SELECT revocation_id FROM upload_keys WHERE id = $1 FOR SHARE"
    } else {
        "SELECT revocation_id FROM upload_keys WHERE id = $1"
    };
    let revoked: Option<i64> = sqlx::query_scalar(guard)
        .bind(upload_key_row)
        .fetch_one(&mut **tx)
        .await?;
    Ok(revoked.is_some())
}

async fn insert_path(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: super::Backend,
    obj: &NewPath,
    nar_id: i64,
    outcome: &str,
) -> DbResult<CommitOutcome> {
    if key_revoked(tx, backend, obj.signed.upload_key_row).await? {
        return Ok(CommitOutcome::KeyRevoked);
    }
    let now = crate::clock::now();
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO paths (cache_id, store_path_hash, store_path, nar_id, refs, deriver, ca, sigs, created_at, last_accessed_at)
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
        ledger::record_upload(tx, obj, outcome).await?;
        return Ok(CommitOutcome::Created);
    }
    // A concurrent upload of the same path won the race.
    let existing = existing_outcome(tx, obj)
        .await?
        .unwrap_or(CommitOutcome::AlreadyPresent);
    record_existing(tx, obj, &existing).await?;
    Ok(existing)
}
