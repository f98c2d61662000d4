//! The ledger: the only writer of a cache's append-only history (upload
//! records, divergences, revocations and what they marked, revoked paths)
//! and of its sequence. Every writer of history calls [`append`] inside the
//! transaction that makes its effect visible, as its last statement, so the
//! entry's number is taken at commit time.
//!
//! Sequencing is apart from integration (as in Tessera): `append` gives an
//! entry the next number of its cache's log, gap-free and in commit order
//! on SQLite and on PostgreSQL with several replicas; a transparency log
//! integrates the numbered entries into its tree later. A BIGSERIAL would
//! not do: two transactions take ids in one order and may commit in the
//! other. Here the number comes from the cache's `ledger_heads` row, whose
//! row lock (PostgreSQL) or the write lock (SQLite) is held until commit; a
//! rolled-back transaction gives its number back.

use sqlx::{Any, Transaction};

use super::commit::NewPath;
use super::{DbError, DbResult};

/// What a ledger entry records; `record_id` is the row in its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// An upload key certified (`upload_keys`).
    UploadKey,
    /// An accepted upload statement (`uploads`).
    Upload,
    /// A refused statement claiming another NAR (`divergences`).
    Divergence,
    /// A revocation that marked keys or records of the cache (`revocations`).
    Revocation,
    /// An accepted closure statement (`closure_statements`).
    ClosureStatement,
    /// A pin set, re-pinned or removed (`pin_changes`).
    PinChange,
    /// Paths deleted: expired or evicted by GC, or deleted by a caller
    /// (`path_deletions`).
    PathDeletion,
    /// The CA certificate that certifies the cache's keys (`logged_cas`).
    CaCertificate,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::UploadKey => "upload-key",
            EntryKind::Upload => "upload",
            EntryKind::Divergence => "divergence",
            EntryKind::Revocation => "revocation",
            EntryKind::ClosureStatement => "closure-statement",
            EntryKind::PinChange => "pin-change",
            EntryKind::PathDeletion => "path-deletion",
            EntryKind::CaCertificate => "ca-certificate",
        }
    }
}

/// Appends an entry to `cache_id`'s log and returns its sequence number
/// (1 for a cache's first entry).
pub(super) async fn append(
    tx: &mut Transaction<'_, Any>,
    cache_id: i64,
    kind: EntryKind,
    record_id: i64,
) -> DbResult<i64> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO ledger_heads (cache_id, last_seq) VALUES ($1, 1)
         ON CONFLICT (cache_id) DO UPDATE SET last_seq = ledger_heads.last_seq + 1
         RETURNING last_seq",
    )
    .bind(cache_id)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO ledger (cache_id, seq, kind, record_id, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(cache_id)
    .bind(seq)
    .bind(kind.as_str())
    .bind(record_id)
    .bind(crate::clock::now())
    .execute(&mut **tx)
    .await?;
    Ok(seq)
}

/// The log index of `ca_pem`'s entry in `cache_id`'s log, appending it
/// first if this CA certifies a key of the cache for the first time: a
/// key's entry names the CA entry, logged before it, that a verifier
/// checks its certificate against.
pub(super) async fn log_ca_certificate(
    tx: &mut Transaction<'_, Any>,
    cache_id: i64,
    ca_pem: &str,
) -> DbResult<i64> {
    use sha2::Digest;
    let fingerprint = hex::encode(sha2::Sha256::digest(ca_pem.as_bytes()));
    let made: Option<i64> = sqlx::query_scalar(
        "INSERT INTO logged_cas (cache_id, fingerprint, cert_pem, log_index, created_at)
         VALUES ($1, $2, $3, -1, $4) ON CONFLICT (cache_id, fingerprint) DO NOTHING RETURNING id",
    )
    .bind(cache_id)
    .bind(&fingerprint)
    .bind(ca_pem)
    .bind(crate::clock::now())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(id) = made else {
        return Ok(sqlx::query_scalar(
            "SELECT log_index FROM logged_cas WHERE cache_id = $1 AND fingerprint = $2",
        )
        .bind(cache_id)
        .bind(&fingerprint)
        .fetch_one(&mut **tx)
        .await?);
    };
    let index = append(tx, cache_id, EntryKind::CaCertificate, id).await? - 1;
    sqlx::query("UPDATE logged_cas SET log_index = $1 WHERE id = $2")
        .bind(index)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(index)
}

/// Spends the statement's nonce in the transaction that records it: a
/// second recording of the same statement (a replay, or the loser of two
/// racing copies) fails, and its transaction is rolled back.
async fn spend_statement(tx: &mut Transaction<'_, Any>, path: &NewPath) -> DbResult<()> {
    spend_nonce(
        tx,
        path.signed.upload_key_row,
        &path.signed.nonce,
        path.signed.remember_until,
    )
    .await
}

/// Spends `nonce` of the key `upload_key_row` (an upload or closure
/// statement's); [`DbError::StatementReplayed`] if it was spent.
pub(super) async fn spend_nonce(
    tx: &mut Transaction<'_, Any>,
    upload_key_row: i64,
    nonce: &str,
    remember_until: i64,
) -> DbResult<()> {
    let spent = sqlx::query(
        "INSERT INTO spent_statements (upload_key_id, nonce, remember_until) VALUES ($1, $2, $3)
         ON CONFLICT (upload_key_id, nonce) DO NOTHING",
    )
    .bind(upload_key_row)
    .bind(nonce)
    .bind(remember_until)
    .execute(&mut **tx)
    .await?;
    if spent.rows_affected() == 0 {
        return Err(DbError::StatementReplayed);
    }
    Ok(())
}

/// Records an accepted statement in the path's provenance (`outcome`:
/// uploaded, deduplicated or exists) and appends it to the ledger.
pub(super) async fn record_upload(
    tx: &mut Transaction<'_, Any>,
    path: &NewPath,
    outcome: &str,
) -> DbResult<()> {
    spend_statement(tx, path).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO uploads (cache_id, store_path_hash, store_path, nar_hash, nar_size,
             upload_key_id, statement, signature, outcome, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(path.cache_id)
    .bind(&path.store_path_hash)
    .bind(&path.store_path)
    .bind(&path.nar_hash)
    .bind(path.nar_size)
    .bind(path.signed.upload_key_row)
    .bind(&path.signed.statement)
    .bind(&path.signed.signature)
    .bind(outcome)
    .bind(crate::clock::now())
    .fetch_one(&mut **tx)
    .await?;
    append(tx, path.cache_id, EntryKind::Upload, id).await?;
    Ok(())
}

/// A claim of another NAR than the one the cache serves for a path.
struct DivergenceClaim<'a> {
    cache_id: i64,
    store_path_hash: &'a str,
    store_path: &'a str,
    existing_nar_hash: &'a str,
    nar_hash: &'a str,
    nar_size: i64,
    upload_key_row: i64,
    statement: &'a str,
    signature: &'a str,
}

async fn insert_divergence(
    tx: &mut Transaction<'_, Any>,
    c: &DivergenceClaim<'_>,
) -> DbResult<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO divergences (cache_id, store_path_hash, store_path, existing_nar_hash,
             nar_hash, nar_size, upload_key_id, statement, signature, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(c.cache_id)
    .bind(c.store_path_hash)
    .bind(c.store_path)
    .bind(c.existing_nar_hash)
    .bind(c.nar_hash)
    .bind(c.nar_size)
    .bind(c.upload_key_row)
    .bind(c.statement)
    .bind(c.signature)
    .bind(crate::clock::now())
    .fetch_one(&mut **tx)
    .await?)
}

/// Records a refused statement that claimed another NAR than the one the
/// cache serves for the path.
pub(super) async fn record_divergence(
    tx: &mut Transaction<'_, Any>,
    path: &NewPath,
    existing_nar_hash: &str,
) -> DbResult<()> {
    spend_statement(tx, path).await?;
    let claim = DivergenceClaim {
        cache_id: path.cache_id,
        store_path_hash: &path.store_path_hash,
        store_path: &path.store_path,
        existing_nar_hash,
        nar_hash: &path.nar_hash,
        nar_size: path.nar_size,
        upload_key_row: path.signed.upload_key_row,
        statement: &path.signed.statement,
        signature: &path.signed.signature,
    };
    let id = insert_divergence(tx, &claim).await?;
    append(tx, path.cache_id, EntryKind::Divergence, id).await?;
    Ok(())
}

/// Records an accepted closure statement and the stored paths it vouches
/// for (`path_ids`), and appends it to the ledger: one entry per statement.
pub(super) async fn record_closure_statement(
    tx: &mut Transaction<'_, Any>,
    st: &super::closure::NewClosureStatement,
    path_ids: &[i64],
) -> DbResult<i64> {
    spend_nonce(tx, st.upload_key_row, &st.nonce, st.remember_until).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO closure_statements (cache_id, upload_key_id, statement, signature, paths, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(st.cache_id)
    .bind(st.upload_key_row)
    .bind(&st.compressed)
    .bind(&st.signature)
    .bind(st.entries.len() as i64)
    .bind(crate::clock::now())
    .fetch_one(&mut **tx)
    .await?;
    for batch in path_ids.chunks(super::BATCH) {
        let rows: Vec<String> = (0..batch.len())
            .map(|i| format!("(${}, $1)", i + 2))
            .collect();
        let sql = format!(
            "INSERT INTO vouches (path_id, statement_id) VALUES {}",
            rows.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id);
        for p in batch {
            q = q.bind(*p);
        }
        q.execute(&mut **tx).await?;
    }
    append(tx, st.cache_id, EntryKind::ClosureStatement, id).await?;
    Ok(id)
}

/// Records a refused closure statement's claims of another NAR for paths
/// the cache serves, one divergence each (the statement's text as the
/// claim), and spends its nonce once.
pub(super) async fn record_closure_divergences(
    tx: &mut Transaction<'_, Any>,
    st: &super::closure::NewClosureStatement,
    diverged: &[(&super::closure::ClosureEntry, String)],
) -> DbResult<()> {
    spend_nonce(tx, st.upload_key_row, &st.nonce, st.remember_until).await?;
    for (entry, existing_nar_hash) in diverged {
        let claim = DivergenceClaim {
            cache_id: st.cache_id,
            store_path_hash: &entry.store_path_hash,
            store_path: &entry.store_path,
            existing_nar_hash,
            nar_hash: &entry.nar_hash,
            nar_size: entry.nar_size,
            upload_key_row: st.upload_key_row,
            statement: &st.text,
            signature: &st.signature,
        };
        let id = insert_divergence(tx, &claim).await?;
        append(tx, st.cache_id, EntryKind::Divergence, id).await?;
    }
    Ok(())
}

/// A change of a pin, as recorded: what it set and what it released.
pub(super) struct PinChange<'a> {
    pub cache_id: i64,
    pub name: &'a str,
    /// `pin` or `remove`.
    pub action: &'a str,
    pub store_path: Option<&'a str>,
    pub keep_revisions: Option<i64>,
    /// Store paths of the revisions it dropped.
    pub dropped: &'a [String],
    pub actor: &'a str,
}

/// Records a pin change and appends it to the ledger.
pub(super) async fn record_pin_change(
    tx: &mut Transaction<'_, Any>,
    change: &PinChange<'_>,
) -> DbResult<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO pin_changes (cache_id, name, action, store_path, keep_revisions, dropped, actor, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(change.cache_id)
    .bind(change.name)
    .bind(change.action)
    .bind(change.store_path)
    .bind(change.keep_revisions)
    .bind(serde_json::to_string(change.dropped).unwrap_or_else(|_| "[]".into()))
    .bind(change.actor)
    .bind(crate::clock::now())
    .fetch_one(&mut **tx)
    .await?;
    append(tx, change.cache_id, EntryKind::PinChange, id).await?;
    Ok(id)
}

/// Records that `store_paths` of `cache_id` were deleted (`reason`:
/// expired, evicted, deleted) and appends it to the ledger.
pub(super) async fn record_path_deletion(
    tx: &mut Transaction<'_, Any>,
    cache_id: i64,
    reason: &str,
    actor: &str,
    store_paths: &[String],
) -> DbResult<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO path_deletions (cache_id, reason, actor, paths, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(cache_id)
    .bind(reason)
    .bind(actor)
    .bind(serde_json::to_string(store_paths).unwrap_or_else(|_| "[]".into()))
    .bind(crate::clock::now())
    .fetch_one(&mut **tx)
    .await?;
    append(tx, cache_id, EntryKind::PathDeletion, id).await?;
    Ok(id)
}

/// Starts a revocation: who, why and the selector as given. Its ledger
/// entries are appended by [`finish_revocation`], per cache it touched.
pub(super) async fn record_revocation(
    tx: &mut Transaction<'_, Any>,
    actor: &str,
    reason: &str,
    selector: &str,
    now: i64,
) -> DbResult<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO revocations (actor, reason, selector, created_at)
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(actor)
    .bind(reason)
    .bind(selector)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?)
}

/// Marks rows of `table` (`upload_keys` or `uploads`) as revoked by
/// `revocation_id`; records are never deleted, only marked.
pub(super) async fn mark_revoked(
    tx: &mut Transaction<'_, Any>,
    table: RevocableTable,
    revocation_id: i64,
    ids: &[i64],
) -> DbResult<()> {
    for batch in ids.chunks(super::BATCH) {
        let sql = format!(
            "UPDATE {} SET revocation_id = $1 WHERE id IN ({})",
            table.name(),
            super::placeholders(2, batch.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(revocation_id);
        for id in batch {
            q = q.bind(*id);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub(super) enum RevocableTable {
    UploadKeys,
    Uploads,
}

impl RevocableTable {
    fn name(self) -> &'static str {
        match self {
            RevocableTable::UploadKeys => "upload_keys",
            RevocableTable::Uploads => "uploads",
        }
    }
}

/// Appends the paths `path_ids` (a batch, each still stored) to the
/// revoked-paths feed, in one statement; returns each path's feed id by
/// (cache id, store path hash).
pub(super) async fn record_revoked_paths(
    tx: &mut Transaction<'_, Any>,
    path_ids: &[i64],
    revocation_id: i64,
    now: i64,
) -> DbResult<std::collections::HashMap<(i64, String), i64>> {
    let sql = format!(
        "INSERT INTO revoked_paths (cache_id, store_path_hash, store_path, nar_hash, revocation_id, created_at)
         SELECT o.cache_id, o.store_path_hash, o.store_path, n.nar_hash, $1, $2
         FROM paths o JOIN nars n ON o.nar_id = n.id WHERE o.id IN ({})
         ORDER BY o.id
         RETURNING id, cache_id, store_path_hash",
        super::placeholders(3, path_ids.len())
    );
    let mut q = sqlx::query_as::<_, (i64, i64, String)>(sqlx::AssertSqlSafe(sql))
        .bind(revocation_id)
        .bind(now);
    for id in path_ids {
        q = q.bind(*id);
    }
    Ok(q.fetch_all(&mut **tx)
        .await?
        .into_iter()
        .map(|(feed_id, cache_id, hash)| ((cache_id, hash), feed_id))
        .collect())
}

/// Appends the revocation to the log of every cache it touched (each once,
/// in cache order, so concurrent revocations take cache locks in one order).
pub(super) async fn finish_revocation(
    tx: &mut Transaction<'_, Any>,
    revocation_id: i64,
    mut touched_caches: Vec<i64>,
) -> DbResult<()> {
    touched_caches.sort_unstable();
    touched_caches.dedup();
    for cache_id in touched_caches {
        append(tx, cache_id, EntryKind::Revocation, revocation_id).await?;
    }
    Ok(())
}

/// One numbered entry of a cache's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub seq: i64,
    pub kind: String,
    pub record_id: i64,
}

impl super::Db {
    /// Entries of `cache_id`'s log from `from_seq` on, in order.
    pub async fn ledger_entries(
        &self,
        cache_id: i64,
        from_seq: i64,
        limit: i64,
    ) -> DbResult<Vec<LedgerEntry>> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT seq, kind, record_id FROM ledger WHERE cache_id = $1 AND seq >= $2
             ORDER BY seq LIMIT $3",
        )
        .bind(cache_id)
        .bind(from_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LedgerEntry {
                    seq: r.try_get("seq")?,
                    kind: r.try_get("kind")?,
                    record_id: r.try_get("record_id")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
