//! A ledger entry's log entry, read from the record it numbers: the signed
//! bytes as received and what the server asserts beside them
//! (docs/transparency-log.md lists the fields per kind). Records are never
//! changed once written (a revocation marks, it does not edit), so an
//! entry made later is the entry of the moment it was numbered.

use provenix_provenance::tlog::entry::{Entry, EntryHeader};
use serde_json::{json, Value};
use sqlx::{Any, Row, Transaction};
use std::collections::BTreeMap;

use super::{DbError, DbResult};

fn asserted(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn lines(paths: &[String]) -> Vec<u8> {
    let mut body = paths.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    body.into_bytes()
}

pub(super) async fn entry_for(
    tx: &mut Transaction<'_, Any>,
    cache_id: i64,
    cache: &str,
    kind: &str,
    record_id: i64,
    at: i64,
) -> DbResult<Entry> {
    let missing = || DbError::Corrupt(format!("ledger entry {kind} {record_id} has no record"));
    let (asserted, body) = match kind {
        "upload-key" => {
            let r = sqlx::query(
                "SELECT key_id, public_key, kind, issuer, subject, claims, certificate,
                        not_before, not_after, ca_index FROM upload_keys WHERE id = $1",
            )
            .bind(record_id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(missing)?;
            let claims: String = r.try_get("claims")?;
            let claims: Value = serde_json::from_str(&claims).unwrap_or(Value::String(claims));
            let certificate: String = r.try_get("certificate")?;
            let mut fields = asserted(&[
                ("key_id", json!(r.try_get::<String, _>("key_id")?)),
                ("public_key", json!(r.try_get::<String, _>("public_key")?)),
                ("key_kind", json!(r.try_get::<String, _>("kind")?)),
                ("issuer", json!(r.try_get::<String, _>("issuer")?)),
                ("subject", json!(r.try_get::<String, _>("subject")?)),
                ("claims", claims),
                ("not_before", json!(r.try_get::<i64, _>("not_before")?)),
                ("not_after", json!(r.try_get::<i64, _>("not_after")?)),
            ]);
            // Keys certified before CAs were logged name none.
            if let Some(ca) = r.try_get::<Option<i64>, _>("ca_index")? {
                fields.insert("ca_index".into(), json!(ca));
            }
            (fields, certificate.into_bytes())
        }
        "ca-certificate" => {
            let r = sqlx::query("SELECT fingerprint, cert_pem FROM logged_cas WHERE id = $1")
                .bind(record_id)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(missing)?;
            let cert: String = r.try_get("cert_pem")?;
            (
                asserted(&[("sha256", json!(r.try_get::<String, _>("fingerprint")?))]),
                cert.into_bytes(),
            )
        }
        "upload" | "divergence" => {
            let sql = if kind == "upload" {
                "SELECT u.store_path, u.statement, u.signature, u.outcome, k.key_id,
                        '' AS existing_nar_hash
                 FROM uploads u JOIN upload_keys k ON k.id = u.upload_key_id WHERE u.id = $1"
            } else {
                "SELECT d.store_path, d.statement, d.signature, '' AS outcome, k.key_id,
                        d.existing_nar_hash
                 FROM divergences d JOIN upload_keys k ON k.id = d.upload_key_id WHERE d.id = $1"
            };
            let r = sqlx::query(sql)
                .bind(record_id)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(missing)?;
            let mut fields = vec![
                ("store_path", json!(r.try_get::<String, _>("store_path")?)),
                ("key_id", json!(r.try_get::<String, _>("key_id")?)),
                ("signature", json!(r.try_get::<String, _>("signature")?)),
            ];
            if kind == "upload" {
                fields.push(("outcome", json!(r.try_get::<String, _>("outcome")?)));
            } else {
                let existing: String = r.try_get("existing_nar_hash")?;
                fields.push(("existing_nar_hash", json!(existing)));
            }
            let statement: String = r.try_get("statement")?;
            (asserted(&fields), statement.into_bytes())
        }
        "closure-statement" => {
            let r = sqlx::query(
                "SELECT s.statement, s.signature, s.paths, k.key_id
                 FROM closure_statements s JOIN upload_keys k ON k.id = s.upload_key_id
                 WHERE s.id = $1",
            )
            .bind(record_id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(missing)?;
            let compressed: Vec<u8> = r.try_get("statement")?;
            let text = zstd::stream::decode_all(compressed.as_slice())
                .map_err(|e| DbError::Corrupt(format!("closure statement {record_id}: {e}")))?;
            (
                asserted(&[
                    ("key_id", json!(r.try_get::<String, _>("key_id")?)),
                    ("signature", json!(r.try_get::<String, _>("signature")?)),
                    ("paths", json!(r.try_get::<i64, _>("paths")?)),
                ]),
                text,
            )
        }
        "revocation" => {
            let r = sqlx::query("SELECT actor, reason, selector FROM revocations WHERE id = $1")
                .bind(record_id)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(missing)?;
            let selector: String = r.try_get("selector")?;
            let selector: Value =
                serde_json::from_str(&selector).unwrap_or(Value::String(selector));
            let removed: Vec<String> = sqlx::query_scalar(
                "SELECT store_path FROM revoked_paths WHERE revocation_id = $1 AND cache_id = $2
                 ORDER BY id",
            )
            .bind(record_id)
            .bind(cache_id)
            .fetch_all(&mut **tx)
            .await?;
            (
                asserted(&[
                    ("actor", json!(r.try_get::<String, _>("actor")?)),
                    ("reason", json!(r.try_get::<String, _>("reason")?)),
                    ("selector", selector),
                    ("removed_paths", json!(removed.len())),
                ]),
                lines(&removed),
            )
        }
        "pin-change" => {
            let r = sqlx::query(
                "SELECT name, action, store_path, keep_revisions, dropped, actor
                 FROM pin_changes WHERE id = $1",
            )
            .bind(record_id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(missing)?;
            let dropped: String = r.try_get("dropped")?;
            let dropped: Vec<String> = serde_json::from_str(&dropped).unwrap_or_default();
            (
                asserted(&[
                    ("name", json!(r.try_get::<String, _>("name")?)),
                    ("action", json!(r.try_get::<String, _>("action")?)),
                    (
                        "store_path",
                        json!(r.try_get::<Option<String>, _>("store_path")?),
                    ),
                    (
                        "keep_revisions",
                        json!(r.try_get::<Option<i64>, _>("keep_revisions")?),
                    ),
                    ("actor", json!(r.try_get::<String, _>("actor")?)),
                ]),
                lines(&dropped),
            )
        }
        "path-deletion" => {
            let r = sqlx::query("SELECT reason, actor, paths FROM path_deletions WHERE id = $1")
                .bind(record_id)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(missing)?;
            let paths: String = r.try_get("paths")?;
            let paths: Vec<String> = serde_json::from_str(&paths).unwrap_or_default();
            (
                asserted(&[
                    ("reason", json!(r.try_get::<String, _>("reason")?)),
                    ("actor", json!(r.try_get::<String, _>("actor")?)),
                    ("deleted_paths", json!(paths.len())),
                ]),
                lines(&paths),
            )
        }
        other => {
            return Err(DbError::Corrupt(format!(
                "ledger entry of unknown kind {other:?}"
            )))
        }
    };
    Ok(Entry::new(
        EntryHeader {
            kind: kind.to_string(),
            cache: cache.to_string(),
            time: at,
            asserted,
            body_sha256: None,
            asserted_sha256: None,
        },
        body,
    ))
}
