//! Synthetic store paths written straight into the server's SQLite database
//! (with Debian's sqlite3), to measure narinfo lookups as a cache grows to a
//! million paths. Each row is a path with its own NAR row, as an upload
//! leaves them; no chunks or objects are stored for them.

use anyhow::{bail, Result};
use std::path::Path;
use std::process::Command;

fn sqlite(db: &Path, sql: &str) -> Result<String> {
    crate::output(Command::new("sqlite3").arg(db).arg(sql))
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
        &format!("SELECT count(*) FROM objects WHERE cache_id = {cache_id};"),
    )?;
    Ok(out.trim().parse()?)
}

/// Adds synthetic paths until the cache holds `total`.
pub fn grow_to(db: &Path, cache_id: i64, total: u64) -> Result<()> {
    let have = path_count(db, cache_id)?;
    if have >= total {
        return Ok(());
    }
    let add = total - have;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    // Hash parts: 32 lowercase hex digits with `e` (not in Nix's base-32
    // alphabet) replaced, so every one is a valid store path hash.
    let sql = format!(
        "PRAGMA busy_timeout = 10000;
BEGIN IMMEDIATE;
CREATE TEMP TABLE gen AS
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {add})
  SELECT replace(lower(hex(randomblob(16))), 'e', 'z') AS h,
         'sha256:' || lower(hex(randomblob(32))) AS nh FROM n;
INSERT INTO nars (nar_hash, nar_size, compression, file_size, num_chunks, created_at)
  SELECT nh, 65536, 'zstd', 32768, 1, {now} FROM gen;
INSERT INTO objects (cache_id, store_path_hash, store_path, nar_id, refs, deriver, ca, sigs, created_at, last_accessed_at)
  SELECT {cache_id}, g.h, '/nix/store/' || g.h || '-synthetic', n.id, '[]', NULL, NULL, '[]', {now}, {now}
  FROM gen g JOIN nars n ON n.nar_hash = g.nh;
COMMIT;"
    );
    sqlite(db, &sql)?;
    Ok(())
}

/// `n` random hash parts of the cache's paths.
pub fn sample(db: &Path, cache_id: i64, n: u32) -> Result<Vec<String>> {
    let out = sqlite(
        db,
        &format!(
            "SELECT store_path_hash FROM objects WHERE cache_id = {cache_id} ORDER BY random() LIMIT {n};"
        ),
    )?;
    Ok(out.lines().map(|l| l.trim().to_string()).collect())
}
