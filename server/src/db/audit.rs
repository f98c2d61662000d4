//! Reading provenance for auditors: upload records, keys issued and
//! divergences, filtered by identity and time, paged by id (the queries
//! are built with `query.rs`).

use provenix_provenance::audit::{
    AuditQuery, ClosureRecord, DivergenceRecord, KeyRecord, RevocationInfo, UploadRecord,
    DEFAULT_PAGE, MAX_PAGE,
};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::query::{identity_filters, Bind, Filter};
use super::{Db, DbResult};

impl Db {
    /// The issuers of the upload keys in `cache_ids` that `selector`
    /// matches (at most two: enough to tell whether it is ambiguous).
    pub async fn issuers_matching(
        &self,
        cache_ids: &[i64],
        selector: &provenix_provenance::audit::IdentitySelector,
    ) -> DbResult<Vec<String>> {
        let mut f = Filter::new();
        f.add_in("k.cache_id", cache_ids);
        identity_filters(&mut f, selector);
        let sql = format!(
            "SELECT DISTINCT k.issuer FROM upload_keys k WHERE {} ORDER BY k.issuer LIMIT 2",
            f.sql()
        );
        let rows = f.query(sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("issuer"))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}

/// Bytes of closure statements' text one answer decodes and sends.
pub const CLOSURE_TEXT_BUDGET: usize = 4 << 20;

pub fn page_size(q: &AuditQuery) -> i64 {
    q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
}

const KEY_COLUMNS: &str = "k.key_id, k.kind, k.issuer, k.subject, k.claims, k.certificate,
    k.not_before, k.not_after, k.ca_index AS k_ca_index, c.name AS cache_name,
    kr.id AS k_rev_id, kr.created_at AS k_rev_at, kr.actor AS k_rev_actor, kr.reason AS k_rev_reason,
    (SELECT kl.seq - 1 FROM ledger kl
      WHERE kl.cache_id = k.cache_id AND kl.kind = 'upload-key' AND kl.record_id = k.id) AS k_log_index";

/// Joins a key's revocation (alias `kr`) after `signing_keys k`.
const KEY_REVOCATION: &str = "LEFT JOIN revocations kr ON k.revocation_id = kr.id";

fn revocation_from_row(r: &AnyRow, prefix: &str) -> Result<Option<RevocationInfo>, sqlx::Error> {
    let id: Option<i64> = r.try_get(format!("{prefix}_id").as_str())?;
    let Some(id) = id else { return Ok(None) };
    Ok(Some(RevocationInfo {
        id,
        at: r.try_get(format!("{prefix}_at").as_str())?,
        actor: r.try_get(format!("{prefix}_actor").as_str())?,
        reason: r.try_get(format!("{prefix}_reason").as_str())?,
    }))
}

fn key_from_row(r: &AnyRow, now: i64) -> Result<KeyRecord, sqlx::Error> {
    let claims: String = r.try_get("claims")?;
    let not_after: i64 = r.try_get("not_after")?;
    let revocation = revocation_from_row(r, "k_rev")?;
    let status = if revocation.is_some() {
        "revoked"
    } else if now > not_after {
        "expired"
    } else {
        "valid"
    };
    Ok(KeyRecord {
        key_id: r.try_get("key_id")?,
        cache: r.try_get("cache_name")?,
        kind: r.try_get("kind")?,
        issuer: r.try_get("issuer")?,
        subject: r.try_get("subject")?,
        claims: serde_json::from_str(&claims).unwrap_or_default(),
        certificate: r.try_get("certificate")?,
        not_before: r.try_get("not_before")?,
        not_after,
        status: status.into(),
        revocation,
        log_index: r.try_get("k_log_index")?,
        tlog_proof: None,
        ca_log_index: r.try_get("k_ca_index")?,
        ca_tlog_proof: None,
    })
}

fn upload_from_row(r: &AnyRow, now: i64) -> Result<UploadRecord, sqlx::Error> {
    Ok(UploadRecord {
        id: r.try_get("id")?,
        cache: r.try_get("cache_name")?,
        store_path: r.try_get("store_path")?,
        nar_hash: r.try_get("nar_hash")?,
        nar_size: r.try_get("nar_size")?,
        outcome: r.try_get("outcome")?,
        uploaded_at: r.try_get("created_at")?,
        statement: r.try_get("statement")?,
        signature: r.try_get("signature")?,
        key: key_from_row(r, now)?,
        revocation: revocation_from_row(r, "u_rev")?,
        log_index: r.try_get("u_log_index")?,
        tlog_proof: None,
    })
}

impl Db {
    /// Upload records of a cache, newest first (or oldest first), after the
    /// filters; `store_path_hash` narrows to one path.
    pub async fn upload_records(
        &self,
        cache_id: i64,
        store_path_hash: Option<&str>,
        q: &AuditQuery,
        oldest_first: bool,
    ) -> DbResult<Vec<UploadRecord>> {
        let mut f = Filter::new();
        f.add("u.cache_id = ?", Bind::Int(cache_id));
        if let Some(h) = store_path_hash {
            f.add("u.store_path_hash = ?", Bind::Text(h.into()));
        }
        identity_filters(&mut f, &q.identity);
        f.add_window("u.created_at", q.since, q.until);
        if let Some(c) = q.cursor {
            let op = if oldest_first { ">" } else { "<" };
            f.add(&format!("u.id {op} ?"), Bind::Int(c));
        }
        let order = if oldest_first { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT u.id, u.store_path, u.nar_hash, u.nar_size, u.outcome, u.created_at,
                    u.statement, u.signature, {KEY_COLUMNS},
                    ur.id AS u_rev_id, ur.created_at AS u_rev_at, ur.actor AS u_rev_actor,
                    ur.reason AS u_rev_reason,
                    (SELECT ul.seq - 1 FROM ledger ul WHERE ul.cache_id = u.cache_id
                      AND ul.kind = 'upload' AND ul.record_id = u.id) AS u_log_index
             FROM uploads u JOIN upload_keys k ON u.upload_key_id = k.id {KEY_REVOCATION}
                  LEFT JOIN revocations ur ON u.revocation_id = ur.id
                  JOIN caches c ON u.cache_id = c.id
             WHERE {} ORDER BY u.id {order} LIMIT {}",
            f.sql(),
            page_size(q)
        );
        let now = crate::clock::now();
        f.query(sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| upload_from_row(r, now))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Keys issued for a cache, newest first.
    pub async fn key_records(
        &self,
        cache_id: i64,
        q: &AuditQuery,
    ) -> DbResult<Vec<(i64, KeyRecord)>> {
        let mut f = Filter::new();
        f.add("k.cache_id = ?", Bind::Int(cache_id));
        identity_filters(&mut f, &q.identity);
        f.add_window("k.created_at", q.since, q.until);
        if let Some(c) = q.cursor {
            f.add("k.id < ?", Bind::Int(c));
        }
        let sql = format!(
            "SELECT k.id, {KEY_COLUMNS} FROM upload_keys k {KEY_REVOCATION}
                  JOIN caches c ON k.cache_id = c.id
             WHERE {} ORDER BY k.id DESC LIMIT {}",
            f.sql(),
            page_size(q)
        );
        let now = crate::clock::now();
        f.query(sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("id")?, key_from_row(r, now)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Divergences of a cache (or one path), newest first, each with the
    /// records of what the cache serves.
    pub async fn divergence_records(
        &self,
        cache_id: i64,
        store_path_hash: Option<&str>,
        q: &AuditQuery,
    ) -> DbResult<Vec<DivergenceRecord>> {
        let mut f = Filter::new();
        f.add("d.cache_id = ?", Bind::Int(cache_id));
        if let Some(h) = store_path_hash {
            f.add("d.store_path_hash = ?", Bind::Text(h.into()));
        }
        identity_filters(&mut f, &q.identity);
        if let Some(c) = q.cursor {
            f.add("d.id < ?", Bind::Int(c));
        }
        let sql = format!(
            "SELECT d.id, d.store_path, d.store_path_hash, d.existing_nar_hash, d.nar_hash,
                    d.nar_size, d.created_at, d.statement, d.signature, {KEY_COLUMNS}
             FROM divergences d JOIN upload_keys k ON d.upload_key_id = k.id {KEY_REVOCATION}
                  JOIN caches c ON d.cache_id = c.id
             WHERE {} ORDER BY d.id DESC LIMIT {}",
            f.sql(),
            page_size(q)
        );
        let now = crate::clock::now();
        let rows = f.query(sql).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let hash: String = r.try_get("store_path_hash")?;
            let existing_nar_hash: String = r.try_get("existing_nar_hash")?;
            let existing = self
                .upload_records(cache_id, Some(&hash), &AuditQuery::default(), true)
                .await?
                .into_iter()
                .filter(|u| u.nar_hash == existing_nar_hash)
                .collect();
            out.push(DivergenceRecord {
                id: r.try_get("id")?,
                cache: r.try_get("cache_name")?,
                store_path: r.try_get("store_path")?,
                existing_nar_hash,
                nar_hash: r.try_get("nar_hash")?,
                nar_size: r.try_get("nar_size")?,
                at: r.try_get("created_at")?,
                statement: r.try_get("statement")?,
                signature: r.try_get("signature")?,
                key: key_from_row(r, now)?,
                existing,
            });
        }
        Ok(out)
    }

    /// Closure statements of a cache, newest first, after the filters:
    /// with `store_path_hash`, those vouching for that path as stored now;
    /// and whether the text budget cut the page short.
    pub async fn closure_records(
        &self,
        cache_id: i64,
        store_path_hash: Option<&str>,
        q: &AuditQuery,
    ) -> DbResult<(Vec<ClosureRecord>, bool)> {
        let mut f = Filter::new();
        let from = match store_path_hash {
            Some(h) => {
                f.add("o.cache_id = ?", Bind::Int(cache_id));
                f.add("o.store_path_hash = ?", Bind::Text(h.into()));
                "paths o JOIN vouches v ON v.path_id = o.id
                 JOIN closure_statements s ON v.statement_id = s.id"
            }
            None => {
                f.add("s.cache_id = ?", Bind::Int(cache_id));
                "closure_statements s"
            }
        };
        identity_filters(&mut f, &q.identity);
        f.add_window("s.created_at", q.since, q.until);
        if let Some(c) = q.cursor {
            f.add("s.id < ?", Bind::Int(c));
        }
        let sql = format!(
            "SELECT s.id, s.statement, s.signature, s.paths, s.created_at, {KEY_COLUMNS}
             FROM {from} JOIN upload_keys k ON s.upload_key_id = k.id {KEY_REVOCATION}
                  JOIN caches c ON s.cache_id = c.id
             WHERE {} ORDER BY s.id DESC LIMIT {}",
            f.sql(),
            page_size(q)
        );
        let now = crate::clock::now();
        let rows = f.query(sql).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut text_bytes = 0;
        for r in &rows {
            // A statement's text is up to a thousand lines: an answer
            // holds at most CLOSURE_TEXT_BUDGET of them (and always one),
            // the cursor pages on from there.
            if text_bytes > CLOSURE_TEXT_BUDGET {
                return Ok((out, true));
            }
            let compressed: Vec<u8> = r.try_get("statement")?;
            let text = zstd::stream::decode_all(compressed.as_slice())
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            text_bytes += text.len();
            out.push(ClosureRecord {
                id: r.try_get("id")?,
                cache: r.try_get("cache_name")?,
                paths: r.try_get("paths")?,
                at: r.try_get("created_at")?,
                statement: String::from_utf8_lossy(&text).into_owned(),
                signature: r.try_get("signature")?,
                key: key_from_row(r, now)?,
            });
        }
        Ok((out, false))
    }
}
