//! Synthetic store paths written straight into the server's SQLite database
//! (with Debian's sqlite3), to measure a cache of up to a million paths.
//! Each is a path with its own NAR row and an upload record by a synthetic
//! upload key, as an upload leaves them; no chunks or packs are stored.

use anyhow::{bail, Result};
use std::path::Path;
use std::process::Command;

fn sqlite(db: &Path, sql: &str) -> Result<String> {
    // The server writes too: wait for its write lock rather than fail.
    crate::output(
        Command::new("sqlite3")
            .args(["-cmd", ".timeout 30000"])
            .arg(db)
            .arg(sql),
    )
}

fn now() -> Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs())
}

pub fn cache_id(db: &Path, cache: &str) -> Result<i64> {
    let out = sqlite(
        db,
        &format!("SELECT id FROM caches WHERE name = '{cache}';"),
    )?;
    match out.trim().parse() {
        Ok(id) => Ok(id),
        Err(_) => bail!("no cache {cache} in {}", db.display()),
    }
}

pub fn path_count(db: &Path, cache_id: i64) -> Result<u64> {
    let out = sqlite(
        db,
        &format!("SELECT count(*) FROM paths WHERE cache_id = {cache_id};"),
    )?;
    Ok(out.trim().parse()?)
}

/// A synthetic upload key of the cache (an access-token key of `subject`,
/// valid for a year); returns (row id, key id).
pub fn upload_key(db: &Path, cache_id: i64, subject: &str) -> Result<(i64, String)> {
    let now = now()?;
    let out = sqlite(
        db,
        &format!(
            "INSERT INTO upload_keys (key_id, public_key, cache_id, kind, issuer, subject, claims,
                 certificate, not_before, not_after, created_at)
             VALUES (lower(hex(randomblob(16))), lower(hex(randomblob(32))), {cache_id}, 'token',
                 'provenix', '{subject}', '{{}}', 'synthetic', {now}, {}, {now})
             RETURNING id || ' ' || key_id;",
            now + 365 * 86_400
        ),
    )?;
    match out.trim().split_once(' ') {
        Some((id, key)) => Ok((id.parse()?, key.to_string())),
        None => bail!("no key row: {out}"),
    }
}

/// Adds synthetic paths, each uploaded by `key_row`, until the cache holds
/// `total`.
pub fn grow_to(db: &Path, cache_id: i64, key_row: i64, total: u64) -> Result<()> {
    let have = path_count(db, cache_id)?;
    if have >= total {
        return Ok(());
    }
    let add = total - have;
    let now = now()?;
    // Hash parts: 32 lowercase hex digits with `e` (not in Nix's base-32
    // alphabet) replaced, so every one is a valid store path hash. The
    // statement is as long as a real one (about 500 bytes).
    let sql = format!(
        "BEGIN IMMEDIATE;
CREATE TEMP TABLE gen AS
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {add})
  SELECT replace(lower(hex(randomblob(16))), 'e', 'z') AS h,
         'sha256:' || lower(hex(randomblob(32))) AS nh FROM n;
INSERT INTO nars (nar_hash, nar_size, compression, file_size, num_chunks, created_at)
  SELECT nh, 65536, 'zstd', 32768, 1, {now} FROM gen;
INSERT INTO paths (cache_id, store_path_hash, store_path, nar_id, refs, deriver, ca, sigs, created_at, last_accessed_at)
  SELECT {cache_id}, g.h, '/nix/store/' || g.h || '-synthetic', n.id, '[]', NULL, NULL, '[]', {now}, {now}
  FROM gen g JOIN nars n ON n.nar_hash = g.nh;
INSERT INTO uploads (cache_id, store_path_hash, store_path, nar_hash, nar_size, upload_key_id,
    statement, signature, outcome, created_at)
  SELECT {cache_id}, h, '/nix/store/' || h || '-synthetic', nh, 65536, {key_row},
    hex(zeroblob(250)), hex(zeroblob(44)), 'uploaded', {now} FROM gen;
COMMIT;"
    );
    sqlite(db, &sql)?;
    Ok(())
}

/// Moves the upload records of `n` of the cache's paths from `from_key`
/// to a new key of `subject`, their only record then; returns its key id.
pub fn hand_over(db: &Path, cache_id: i64, from_key: i64, n: u64, subject: &str) -> Result<String> {
    let (row, key_id) = upload_key(db, cache_id, subject)?;
    sqlite(
        db,
        &format!(
            "UPDATE uploads SET upload_key_id = {row} WHERE id IN (
                 SELECT id FROM uploads WHERE cache_id = {cache_id} AND upload_key_id = {from_key}
                 LIMIT {n});"
        ),
    )?;
    Ok(key_id)
}

/// `n` random hash parts of the cache's paths.
pub fn sample(db: &Path, cache_id: i64, n: u32) -> Result<Vec<String>> {
    let out = sqlite(
        db,
        &format!(
            "SELECT store_path_hash FROM paths WHERE cache_id = {cache_id} ORDER BY random() LIMIT {n};"
        ),
    )?;
    Ok(out.lines().map(|l| l.trim().to_string()).collect())
}
