//! On SQLite, the path lookup (every narinfo and NAR request) and the dedup
//! lookup (every uploaded chunk) run in place on the calling thread, and a
//! NAR's chunk list (a page per blocking-pool hop) on a blocking thread.
//!
//! sqlx runs every SQLite statement on a worker thread per connection and
//! hands results back over channels: for a microsecond point query those two
//! thread switches were most of a narinfo's cost (perf: 45% of server time in
//! futex wake-ups and context switches). A read-only rusqlite connection
//! (same libsqlite3 build as sqlx's) answers the same query in place. In WAL
//! mode readers never wait for writers, so the call does not block the
//! runtime beyond the query itself. Writes and every other query stay on sqlx.

use anyhow::{Context, Result};
use rusqlite::{named_params, Connection, OpenFlags, OptionalExtension};
use std::path::PathBuf;
use std::sync::Mutex;

use super::caches::{CacheRow, PathLookup, PATH_LOOKUP_SQL};
use super::chunks::VALID_CHUNK_SQL;
use super::nars::{ChunkLocation, NAR_CHUNKS_SQL};
use super::paths::PathRow;

/// Idle read-only connections kept for reuse, of each kind.
const KEEP_IDLE: usize = 16;

/// How much of the database a path-lookup connection may map.
const LOOKUP_MMAP: i64 = 1 << 30;

/// What a connection is for: path lookups read a few pages of the path and
/// NAR tables at random; scans page through chunk rows (an upload's dedup
/// lookups, a NAR's chunk list).
#[derive(Clone, Copy)]
enum Use {
    Lookup,
    Scan,
}

pub struct SqliteReader {
    path: PathBuf,
    idle_lookups: Mutex<Vec<Connection>>,
    idle_scans: Mutex<Vec<Connection>>,
}

impl SqliteReader {
    /// `url`: the sqlx URL (`sqlite://PATH?...`); None for an in-memory database.
    pub fn for_url(url: &str) -> Option<SqliteReader> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path.contains(":memory:") {
            return None;
        }
        Some(SqliteReader {
            path: PathBuf::from(path),
            idle_lookups: Mutex::new(Vec::new()),
            idle_scans: Mutex::new(Vec::new()),
        })
    }

    fn idle(&self, kind: Use) -> &Mutex<Vec<Connection>> {
        match kind {
            Use::Lookup => &self.idle_lookups,
            Use::Scan => &self.idle_scans,
        }
    }

    fn connection(&self, kind: Use) -> Result<Connection> {
        if let Some(c) = self.idle(kind).lock().expect("not poisoned").pop() {
            return Ok(c);
        }
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open {} for reading", self.path.display()))?;
        c.busy_timeout(std::time::Duration::from_secs(10))?;
        // Without the query planner stability guarantee, SQLite recompiles a
        // cached statement on its next step whenever a parameter it may plan
        // by is bound anew (the chunk list's LIMIT, for one): a tenth of a
        // pull's server CPU went to re-parsing these statements. Their plans
        // do not depend on the values.
        c.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        if let Use::Lookup = kind {
            // Path lookups read the kernel's page cache in place instead of
            // copying pages into SQLite's (capped at 4 MiB for the process,
            // which a large cache's hot paths outgrow): at a million paths
            // the lookup was 1.3 to 1.8x slower than at a thousand, mapped
            // 1.1x. Only these connections map: an upload's or a pull's scan
            // of chunk rows would count the pages it touched in the
            // server's resident memory.
            c.pragma_update(None, "mmap_size", LOOKUP_MMAP)?;
        }
        Ok(c)
    }

    /// Runs `f` on an idle connection of the kind (opening one if none is idle).
    fn with_connection<T>(
        &self,
        kind: Use,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let conn = self.connection(kind)?;
        let result = f(&conn);
        let mut idle = self.idle(kind).lock().expect("not poisoned");
        if idle.len() < KEEP_IDLE {
            idle.push(conn);
        }
        Ok(result?)
    }

    pub fn path_lookup(&self, cache_name: &str, hash: &str) -> Result<Option<PathLookup>> {
        self.with_connection(Use::Lookup, |conn| lookup(conn, cache_name, hash))
            .context("path lookup")
    }

    /// The id of a valid stored chunk with this hash, if any: asked for
    /// every chunk of every upload, so it runs in place too.
    pub fn valid_chunk(&self, hash: &str, compression: &str) -> Result<Option<i64>> {
        self.with_connection(Use::Scan, |conn| {
            conn.prepare_cached(VALID_CHUNK_SQL)?
                .query_row(named_params! {"$1": hash, "$2": compression}, |r| r.get(0))
                .optional()
        })
        .context("chunk lookup")
    }

    /// A page of a NAR's chunk locations (see `Db::nar_chunks`).
    pub fn nar_chunks(&self, nar_id: i64, from: i64, limit: i64) -> Result<Vec<ChunkLocation>> {
        self.with_connection(Use::Scan, |conn| {
            let mut stmt = conn.prepare_cached(NAR_CHUNKS_SQL)?;
            let rows =
                stmt.query_map(named_params! {"$1": nar_id, "$2": from, "$3": limit}, |r| {
                    Ok(ChunkLocation {
                        pack_key: r.get(0)?,
                        offset: r.get(1)?,
                        file_size: r.get(2)?,
                    })
                })?;
            rows.collect()
        })
        .context("reading a NAR's chunk list")
    }
}

fn lookup(conn: &Connection, cache_name: &str, hash: &str) -> rusqlite::Result<Option<PathLookup>> {
    // By name: SQLite numbers `$N` parameters in order of appearance, and
    // the query names `$2` before `$1`. Columns by position (the order of
    // PATH_LOOKUP_SQL): by name, rusqlite compares every column's name per
    // get, a tenth of a narinfo's cost.
    let mut stmt = conn.prepare_cached(PATH_LOOKUP_SQL)?;
    stmt.query_row(named_params! {"$1": cache_name, "$2": hash}, |r| {
        let upstream: String = r.get(5)?;
        let cache = CacheRow {
            id: r.get(0)?,
            name: r.get(1)?,
            is_public: r.get::<_, i64>(2)? != 0,
            priority: r.get(3)?,
            store_dir: r.get(4)?,
            upstream_cache_key_names: serde_json::from_str(&upstream).unwrap_or_default(),
            retention_period: r.get(6)?,
        };
        let path = match r.get::<_, Option<i64>>(8)? {
            None => None,
            Some(id) => Some(PathRow {
                id,
                store_path: r.get(9)?,
                nar_id: r.get(10)?,
                refs_json: r.get(11)?,
                deriver: r.get(12)?,
                ca: r.get(13)?,
                last_accessed_at: r.get(14)?,
                nar_hash: r.get(15)?,
                nar_size: r.get(16)?,
                compression: r.get(17)?,
                file_size: r.get(18)?,
            }),
        };
        Ok(PathLookup {
            cache,
            keys_version: r.get::<_, Option<i64>>(7)?.unwrap_or(0),
            path,
        })
    })
    .optional()
}

#[cfg(test)]
mod tests {
    use super::super::caches::PATH_LOOKUP_SQL;

    /// `lookup` reads columns by position: pin the order it assumes.
    #[test]
    fn path_lookup_columns_are_in_the_order_lookup_reads() {
        let select = PATH_LOOKUP_SQL.split("FROM caches").next().unwrap();
        let columns: Vec<&str> = select
            .trim_start_matches("SELECT")
            .split(',')
            .map(|c| c.split_whitespace().last().unwrap())
            .map(|c| c.rsplit('.').next().unwrap())
            .collect();
        assert_eq!(
            columns,
            [
                "id",
                "name",
                "is_public",
                "priority",
                "store_dir",
                "upstream_cache_key_names",
                "retention_period",
                "keys_version",
                "path_id",
                "store_path",
                "nar_id",
                "refs",
                "deriver",
                "ca",
                "last_accessed_at",
                "nar_hash",
                "nar_size",
                "compression",
                "file_size",
            ]
        );
    }
}
