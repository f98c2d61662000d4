//! The transparency log's tables: integration of ledger entries into each
//! cache's Merkle tree (entry bytes, stored hashes, the signed head), and
//! what the read API serves from them. The entry bytes are made here from
//! the records the ledger numbers (`log_entry.rs`), by the pure encoding of
//! `provenance::tlog::entry`.
//!
//! Integration is one transaction per batch that first takes the log's
//! head row (`UPDATE log_heads`: a row lock on PostgreSQL, the write lock
//! on SQLite), so one replica integrates a log at a time and a crash
//! leaves the head where the last commit put it: the next pass resumes
//! from the ledger.

use provenix_provenance::tlog::checkpoint::{self, LogKey};
use provenix_provenance::tlog::proof::TlogProof;
use provenix_provenance::tlog::tree::{self, Hashes};
use provenix_provenance::tlog::Hash;
use sqlx::Row;

use super::log_entry::entry_for;
use super::{placeholders, Db, DbError, DbResult, BATCH};

/// Entries integrated per transaction: bounds a transaction's length, so
/// a long backlog does not hold the head row (or SQLite's write lock) for
/// long.
pub const INTEGRATE_BATCH: i64 = 256;

/// A log's integrated state.
#[derive(Debug, Clone)]
pub struct LogHead {
    pub size: i64,
    pub root: Hash,
    /// The latest signed checkpoint (empty before the first integration).
    pub checkpoint: String,
    pub updated_at: i64,
    /// The latest published checkpoint, with cosignatures (empty before
    /// the first publication), and its size.
    pub published: String,
    pub published_size: i64,
}

/// What one integration pass did to one log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Integrated {
    pub from: i64,
    pub to: i64,
}

fn hash_from_hex(s: &str) -> DbResult<Hash> {
    let bytes = hex::decode(s).map_err(|e| DbError::Corrupt(format!("log hash {s:?}: {e}")))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| DbError::Corrupt(format!("log hash {s:?} is not 32 bytes")))?;
    Ok(Hash(arr))
}

/// The secret of a log key as the table keeps it: the ed25519 seed, hex.
fn log_key_from(origin: &str, secret: &str) -> DbResult<LogKey> {
    let seed: [u8; 32] = hex::decode(secret)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| DbError::Corrupt("a log key's secret is not 32 bytes of hex".into()))?;
    LogKey::new(origin, ed25519_dalek::SigningKey::from_bytes(&seed))
        .map_err(|e| DbError::Corrupt(e.to_string()))
}

impl Db {
    /// Caches whose ledger is ahead of their log: (cache id, name).
    pub async fn logs_behind(&self) -> DbResult<Vec<(i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT c.id, c.name FROM ledger_heads l JOIN caches c ON c.id = l.cache_id
             LEFT JOIN log_heads h ON h.cache_id = l.cache_id
             WHERE l.last_seq > COALESCE(h.size, 0) ORDER BY c.id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Integrates up to [`INTEGRATE_BATCH`] ledger entries of the cache's
    /// log, signs the new checkpoint with the cache's log key (made on
    /// first use, named `origin`) and commits it all at once; with
    /// `publish`, it is published too (no witnesses to wait for).
    pub async fn integrate_log(
        &self,
        cache_id: i64,
        origin: &str,
        publish: bool,
    ) -> DbResult<Integrated> {
        let now = crate::clock::now();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO log_heads (cache_id, size, root, checkpoint, updated_at, published,
                                    published_size)
             VALUES ($1, 0, $2, '', $3, '', 0) ON CONFLICT (cache_id) DO NOTHING",
        )
        .bind(cache_id)
        .bind(hex::encode(tree::empty_root().0))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Takes the head: replicas integrating the same log take turns.
        sqlx::query("UPDATE log_heads SET updated_at = updated_at WHERE cache_id = $1")
            .bind(cache_id)
            .execute(&mut *tx)
            .await?;
        let size: i64 = sqlx::query_scalar("SELECT size FROM log_heads WHERE cache_id = $1")
            .bind(cache_id)
            .fetch_one(&mut *tx)
            .await?;
        let ledger: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT seq, kind, record_id, created_at FROM ledger
             WHERE cache_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(cache_id)
        .bind(size)
        .bind(INTEGRATE_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if ledger.is_empty() {
            tx.commit().await?;
            return Ok(Integrated {
                from: size,
                to: size,
            });
        }
        let cache: String = sqlx::query_scalar("SELECT name FROM caches WHERE id = $1")
            .bind(cache_id)
            .fetch_one(&mut *tx)
            .await?;
        let mut entries = Vec::with_capacity(ledger.len());
        for (i, (seq, kind, record_id, at)) in ledger.iter().enumerate() {
            // Gap-free by construction (ledger.rs); a gap is damage.
            if *seq != size + 1 + i as i64 {
                return Err(DbError::Corrupt(format!(
                    "cache {cache}'s ledger jumps to {seq} after {}",
                    size + i as i64
                )));
            }
            let entry = entry_for(&mut tx, cache_id, &cache, kind, *record_id, *at).await?;
            entries.push(entry.encode());
        }

        let edge_indexes = tree::edge_indexes(size as u64);
        let edge = read_hashes(&mut tx, cache_id, &edge_indexes).await?;
        let appended = tree::append(size as u64, &entries, edge)
            .map_err(|e| DbError::Corrupt(format!("cache {cache}'s log: {e}")))?;
        for batch in appended.stored.chunks(BATCH / 3) {
            let rows: Vec<String> = (0..batch.len())
                .map(|i| format!("($1, ${}, ${})", 2 + 2 * i, 3 + 2 * i))
                .collect();
            let sql = format!(
                "INSERT INTO log_hashes (cache_id, idx, hash) VALUES {}",
                rows.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(cache_id);
            for (idx, h) in batch {
                q = q.bind(*idx as i64).bind(hex::encode(h.0));
            }
            q.execute(&mut *tx).await?;
        }
        for (i, entry) in entries.iter().enumerate() {
            let text = std::str::from_utf8(entry)
                .map_err(|_| DbError::Corrupt("a log entry is not UTF-8".into()))?;
            sqlx::query("INSERT INTO log_entries (cache_id, idx, entry) VALUES ($1, $2, $3)")
                .bind(cache_id)
                .bind(size + i as i64)
                .bind(text)
                .execute(&mut *tx)
                .await?;
        }
        let keys = live_log_keys(&mut tx, cache_id, origin, now).await?;
        let keys: Vec<&LogKey> = keys.iter().collect();
        let checkpoint = checkpoint::sign_with(&keys, appended.size, appended.root);
        let checkpoint = String::from_utf8(checkpoint).expect("a checkpoint is text");
        sqlx::query(
            "UPDATE log_heads SET size = $1, root = $2, checkpoint = $3, updated_at = $4,
                published = CASE WHEN $5 = 1 THEN $6 ELSE published END,
                published_size = CASE WHEN $7 = 1 THEN $8 ELSE published_size END
             WHERE cache_id = $9",
        )
        .bind(appended.size as i64)
        .bind(hex::encode(appended.root.0))
        .bind(&checkpoint)
        .bind(now)
        .bind(publish as i64)
        .bind(&checkpoint)
        .bind(publish as i64)
        .bind(appended.size as i64)
        .bind(cache_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Integrated {
            from: size,
            to: appended.size as i64,
        })
    }

    /// The log's head; None before its first integration.
    pub async fn log_head(&self, cache_id: i64) -> DbResult<Option<LogHead>> {
        let row = sqlx::query(
            "SELECT size, root, checkpoint, updated_at, published, published_size
             FROM log_heads WHERE cache_id = $1",
        )
        .bind(cache_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(LogHead {
                size: r.try_get("size")?,
                root: hash_from_hex(&r.try_get::<String, _>("root")?)?,
                checkpoint: r.try_get("checkpoint")?,
                updated_at: r.try_get("updated_at")?,
                published: r.try_get("published")?,
                published_size: r.try_get("published_size")?,
            })
        })
        .transpose()
    }

    /// Logs whose latest checkpoint is not published yet: (cache id, head).
    pub async fn logs_unpublished(&self) -> DbResult<Vec<(i64, LogHead)>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT cache_id FROM log_heads WHERE size > published_size ORDER BY cache_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(head) = self.log_head(id).await? {
                out.push((id, head));
            }
        }
        Ok(out)
    }

    /// Publishes `checkpoint` (of `size` entries) unless a larger one was.
    pub async fn publish_checkpoint(
        &self,
        cache_id: i64,
        size: i64,
        checkpoint: &str,
    ) -> DbResult<()> {
        sqlx::query(
            "UPDATE log_heads SET published = $1, published_size = $2
             WHERE cache_id = $3 AND published_size < $4",
        )
        .bind(checkpoint)
        .bind(size)
        .bind(cache_id)
        .bind(size)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stored hashes by index (those the log has).
    pub async fn log_hashes(&self, cache_id: i64, indexes: &[u64]) -> DbResult<Hashes> {
        let mut conn = self.pool.acquire().await?;
        read_hashes(&mut conn, cache_id, indexes).await
    }

    /// The c2sp.org/tlog-proof of entry `index` in the log's published
    /// checkpoint `head` (the entry in its `extra` line), or none while
    /// the entry is not yet published.
    pub async fn log_proof(
        &self,
        cache_id: i64,
        head: &LogHead,
        index: i64,
    ) -> DbResult<Option<String>> {
        if head.published.is_empty() || index < 0 || index >= head.published_size {
            return Ok(None);
        }
        let (size, at) = (head.published_size as u64, index as u64);
        let wanted = tree::indexes_read_by(|h| tree::prove_inclusion(size, at, h));
        let hashes = self.log_hashes(cache_id, &wanted).await?;
        let proof = tree::prove_inclusion(size, at, &hashes)
            .map_err(|e| DbError::Corrupt(format!("log of cache {cache_id}: {e}")))?;
        let entry = self
            .log_entries(cache_id, index, index + 1)
            .await?
            .pop()
            .ok_or_else(|| {
                DbError::Corrupt(format!("log of cache {cache_id}: no entry {index}"))
            })?;
        Ok(Some(
            TlogProof {
                extra: Some(entry.into_bytes()),
                index: at,
                proof,
                checkpoint: head.published.clone().into_bytes(),
            }
            .encode(),
        ))
    }

    /// Entries `start..end` of the log, in order.
    pub async fn log_entries(&self, cache_id: i64, start: i64, end: i64) -> DbResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT entry FROM log_entries WHERE cache_id = $1 AND idx >= $2 AND idx < $3
             ORDER BY idx",
        )
        .bind(cache_id)
        .bind(start)
        .bind(end)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The log's origin and verifier keys, newest first, with when each
    /// stops signing (None: current); empty before the first integration.
    pub async fn log_verifier_keys(
        &self,
        cache_id: i64,
    ) -> DbResult<Vec<(String, String, Option<i64>)>> {
        Ok(sqlx::query_as(
            "SELECT origin, verifier_key, retire_at FROM log_keys WHERE cache_id = $1
             ORDER BY id DESC",
        )
        .bind(cache_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

pub(super) async fn read_hashes(
    conn: &mut sqlx::AnyConnection,
    cache_id: i64,
    indexes: &[u64],
) -> DbResult<Hashes> {
    let mut known = Vec::with_capacity(indexes.len());
    for batch in indexes.chunks(BATCH) {
        let sql = format!(
            "SELECT idx, hash FROM log_hashes WHERE cache_id = $1 AND idx IN ({})",
            placeholders(2, batch.len())
        );
        let mut q = sqlx::query_as::<_, (i64, String)>(sqlx::AssertSqlSafe(sql)).bind(cache_id);
        for i in batch {
            q = q.bind(*i as i64);
        }
        for (idx, h) in q.fetch_all(&mut *conn).await? {
            known.push((idx as u64, hash_from_hex(&h)?));
        }
    }
    Ok(Hashes::new(known))
}

/// The keys signing the cache's checkpoints now, newest first: the current
/// one and any rotated out whose overlap has not ended.
async fn live_log_keys(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    cache_id: i64,
    origin: &str,
    now: i64,
) -> DbResult<Vec<LogKey>> {
    let newest = current_log_key(tx, cache_id, origin, now).await?;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT origin, secret FROM log_keys
         WHERE cache_id = $1 AND (retire_at IS NULL OR retire_at > $2)
         ORDER BY id DESC",
    )
    .bind(cache_id)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    let mut keys = vec![newest];
    for (origin, secret) in rows.iter().skip(1) {
        keys.push(log_key_from(origin, secret)?);
    }
    Ok(keys)
}

impl Db {
    /// Starts signing the cache's checkpoints with a new log key (same
    /// origin); the keys signing now keep signing beside it until
    /// `now + overlap` (zero: at once).
    /// Starts signing checkpoints with a new key, the live ones beside it
    /// for `overlap`; refused (nothing changed) past the live-key limit,
    /// checked under the cache's row lock as [`Db::rotate_key`] does.
    pub async fn rotate_log_key(
        &self,
        cache_id: i64,
        overlap: i64,
    ) -> DbResult<Result<String, provenix_policy::limits::OutOfRange>> {
        let now = crate::clock::now();
        let mut tx = self.begin_write().await?;
        self.lock_cache_row(&mut tx, cache_id).await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM log_keys WHERE cache_id = $1 AND (retire_at IS NULL OR retire_at > $2)",
        )
        .bind(cache_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if let Err(e) = provenix_policy::limits::check_live_keys(live as usize, overlap) {
            return Ok(Err(e));
        }
        let origin: Option<String> = sqlx::query_scalar(
            "SELECT origin FROM log_keys WHERE cache_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(cache_id)
        .fetch_optional(&mut *tx)
        .await?;
        let origin =
            origin.ok_or_else(|| DbError::Corrupt(format!("cache {cache_id} has no log key")))?;
        sqlx::query(
            "UPDATE log_keys SET retire_at = $1
             WHERE cache_id = $2 AND (retire_at IS NULL OR retire_at > $3)",
        )
        .bind(now + overlap)
        .bind(cache_id)
        .bind(now + overlap)
        .execute(&mut *tx)
        .await?;
        let seed: [u8; 32] = rand::random();
        let key = log_key_from(&origin, &hex::encode(seed))?;
        sqlx::query(
            "INSERT INTO log_keys (cache_id, origin, secret, verifier_key, created_at, retire_at)
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(cache_id)
        .bind(&origin)
        .bind(hex::encode(seed))
        .bind(key.verifier_key())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(key.verifier_key()))
    }
}

/// The key signing the cache's checkpoints now, with the log's origin;
/// made for `origin` if the cache has none (at its creation, or for a
/// cache made before logs existed, at its first integration).
pub(super) async fn current_log_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    cache_id: i64,
    origin: &str,
    now: i64,
) -> DbResult<LogKey> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT origin, secret FROM log_keys
         WHERE cache_id = $1 AND (retire_at IS NULL OR retire_at > $2)
         ORDER BY id DESC LIMIT 1",
    )
    .bind(cache_id)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some((origin, secret)) = row {
        return log_key_from(&origin, &secret);
    }
    let seed: [u8; 32] = rand::random();
    let key = log_key_from(origin, &hex::encode(seed))?;
    sqlx::query(
        "INSERT INTO log_keys (cache_id, origin, secret, verifier_key, created_at, retire_at)
         VALUES ($1, $2, $3, $4, $5, NULL)",
    )
    .bind(cache_id)
    .bind(origin)
    .bind(hex::encode(seed))
    .bind(key.verifier_key())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(key)
}
