//! Metadata in SQLite or PostgreSQL through `sqlx::Any`, so one set of
//! queries serves both. Queries use `$N` placeholders in order of appearance
//! (SQLite numbers them by first use) and only i64/String column types.
//!
//! The map: `caches.rs` (caches, their Nix keys, the narinfo lookup),
//! `paths.rs`, `nars.rs`, `chunks.rs`, `commit.rs` (the transaction that
//! makes an upload visible), `ledger.rs` (the only writer of history and its
//! sequence), `upload_keys.rs`, `publishers.rs`, `audit.rs` and `query.rs`
//! (reading history), `revocation.rs`, `pins.rs`, `gc.rs`, `upload_sessions.rs` (uploads sent in
//! parts); `sqlite_reader.rs` runs the
//! hottest reads in place on SQLite.

pub mod audit;
pub mod caches;
pub mod chunks;
pub mod closure;
pub mod commit;
pub mod gc;
pub mod ledger;
pub mod log;
pub mod log_check;
mod log_entry;
pub mod nars;
pub mod paths;
pub mod pins;
pub mod publishers;
mod query;
mod recent_caches;
pub mod revocation;
mod sqlite_reader;
pub mod staged_nars;
pub mod upload_keys;
pub mod upload_sessions;

use anyhow::{Context, Result};
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, SqlSafeStr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    /// SQLite only: the one connection write transactions take turns on.
    /// SQLite admits one writer at a time; writers waiting in its busy
    /// handler sleep 1, 2, 5, 10... ms between tries, so concurrent uploads'
    /// commits took many times their length. Waiting here is a queue.
    sqlite_writer: Option<AnyPool>,
    backend: Backend,
    /// SQLite only: the narinfo lookup without sqlx's thread hops.
    sqlite_reader: Option<std::sync::Arc<sqlite_reader::SqliteReader>>,
    /// Cache rows read in the last second, for the log's tiles.
    recent_caches: std::sync::Arc<recent_caches::RecentCaches>,
}

/// A database failure, saying whether running the transaction again can
/// succeed: PostgreSQL aborts one of two transactions that lock rows in
/// opposite orders (40P01) or cannot be serialized (40001), and then
/// nothing was committed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("transaction aborted by a conflict with another: {0}")]
    Transient(sqlx::Error),
    /// The database cannot be reached (down, restarting, refusing
    /// connections, or the pool found no connection in time). Nothing was
    /// committed; the pool reconnects by itself once it is back.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error("database: {0}")]
    Other(sqlx::Error),
    /// The statement's (key, nonce) was recorded before: a replay. The
    /// transaction was rolled back.
    #[error("the upload statement was used before")]
    StatementReplayed,
    /// The database holds what its own invariants rule out (a gap in a
    /// ledger, a malformed log hash): damage, never a caller's fault.
    #[error("damaged data in the database: {0}")]
    Corrupt(String),
}

impl DbError {
    pub fn is_transient(&self) -> bool {
        matches!(self, DbError::Transient(_))
    }
}

/// Whether `e` says the database is out of reach rather than that a
/// statement failed: I/O and pool timeouts, PostgreSQL's connection
/// exceptions (class 08) and its shutting-down or starting-up refusals
/// (57P01-57P03).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        let transient = matches!(&e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")));
        if transient {
            DbError::Transient(e)
        } else if is_unavailable(&e) {
            DbError::Unavailable(e)
        } else {
            DbError::Other(e)
        }
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// Chunk lookups an upload's blocking task can make in place, without a
/// hop to the async runtime: SQLite's in-process reader. PostgreSQL has
/// none (its lookups are network round trips, made through the pool).
#[derive(Clone)]
pub struct InPlaceChunkLookup(std::sync::Arc<sqlite_reader::SqliteReader>);

impl InPlaceChunkLookup {
    /// As [`Db::valid_chunk`], blocking.
    pub fn valid_chunk(&self, hash: &str, compression: &str) -> anyhow::Result<Option<i64>> {
        self.0.valid_chunk(hash, compression)
    }
}

/// Written in the SQL both databases share; `for_backend` swaps the one
/// constructs they spell differently (auto-increment keys, BLOB, SQLite's
/// WITHOUT ROWID). A migration the two cannot share is in
/// `SPLIT_MIGRATIONS`.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "core", include_str!("../../migrations/0001_core.sql")),
    (
        2,
        "identity",
        include_str!("../../migrations/0002_identity.sql"),
    ),
    (
        3,
        "provenance",
        include_str!("../../migrations/0003_provenance.sql"),
    ),
    (
        4,
        "revocation",
        include_str!("../../migrations/0004_revocation.sql"),
    ),
];

/// Migrations after the split ones, shared again.
const LATER_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        6,
        "names and ledger",
        include_str!("../../migrations/0006_names_and_ledger.sql"),
    ),
    (
        7,
        "spent statements",
        include_str!("../../migrations/0007_spent_statements.sql"),
    ),
    (
        8,
        "closure statements",
        include_str!("../../migrations/0008_closure_statements.sql"),
    ),
    (
        9,
        "pins and size limits",
        include_str!("../../migrations/0009_pins_and_size_limits.sql"),
    ),
    (
        10,
        "transparency log",
        include_str!("../../migrations/0010_transparency_log.sql"),
    ),
    (
        11,
        "logged CA certificates",
        include_str!("../../migrations/0011_logged_ca.sql"),
    ),
    (
        12,
        "upload sessions",
        include_str!("../../migrations/0012_upload_sessions.sql"),
    ),
    (
        13,
        "nix copy uploads",
        include_str!("../../migrations/0013_nix_copy.sql"),
    ),
];

/// (version, description, SQLite, PostgreSQL). The SQLite side manages its
/// own transaction (a table rebuild needs foreign keys off, which SQLite
/// ignores inside a transaction), so it runs outside the migrator's.
const SPLIT_MIGRATIONS: &[(i64, &str, &str, &str)] = &[(
    5,
    "packs",
    include_str!("../../migrations/0005_packs.sqlite.sql"),
    include_str!("../../migrations/0005_packs.postgres.sql"),
)];

fn for_backend(sql: &str, backend: Backend) -> String {
    match backend {
        Backend::Sqlite => sql.to_string(),
        Backend::Postgres => sql
            .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
            .replace(" BLOB ", " BYTEA ")
            .replace(") WITHOUT ROWID;", ");"),
    }
}

/// SQLite's limit on bound parameters is 32766; stay far below it.
pub const BATCH: usize = 500;

/// Memory all SQLite connections of the process may use, page caches
/// included. Each connection caches up to 2 MB of pages by default, and the
/// server holds up to 24 (the pool and the in-place readers): after pushing
/// and pulling a 2 GiB NAR, whose chunk rows every connection had paged
/// through, their caches were most of the difference in peak RSS from a
/// 256 MiB one. The pages stay in the kernel's page cache either way.
const SQLITE_HEAP_LIMIT: i64 = 4 * 1024 * 1024;

fn limit_sqlite_page_caches() {
    // SAFETY: sqlite3_soft_heap_limit64 is thread-safe and only sets a
    // process-wide advisory limit (libsqlite3-sys builds SQLite with memory
    // management, so it applies to every allocation).
    unsafe {
        rusqlite::ffi::sqlite3_soft_heap_limit64(SQLITE_HEAP_LIMIT);
    }
}

impl Db {
    pub async fn connect(url: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url);
        let sqlite_options = |connections: u32| {
            // WAL lets readers proceed during an upload's commit; NORMAL
            // syncs at checkpoints, not at every commit.
            AnyPoolOptions::new()
                .max_connections(connections)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        Ok(())
                    })
                })
        };
        let opts = match backend {
            Backend::Sqlite => sqlite_options(8),
            // A request waits at most this for a connection: while the
            // database is down, answers are prompt 503s, not 30 s hangs.
            Backend::Postgres => AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(std::time::Duration::from_secs(5)),
        };
        let connect = |opts: AnyPoolOptions| async move {
            opts.connect(url)
                .await
                .with_context(|| format!("cannot connect to database {}", redact_url(url)))
        };
        let pool = connect(opts).await?;
        let sqlite_writer = match backend {
            // A long write (a large revocation) makes the others wait.
            Backend::Sqlite => Some(
                connect(sqlite_options(1).acquire_timeout(std::time::Duration::from_secs(120)))
                    .await?,
            ),
            Backend::Postgres => None,
        };
        if backend == Backend::Sqlite {
            limit_sqlite_page_caches();
        }
        let sqlite_reader = match backend {
            Backend::Sqlite => sqlite_reader::SqliteReader::for_url(url).map(std::sync::Arc::new),
            Backend::Postgres => None,
        };
        Ok(Db {
            pool,
            sqlite_writer,
            backend,
            sqlite_reader,
            recent_caches: Default::default(),
        })
    }

    /// The pool's connections: (open, idle), for the metrics.
    pub fn pool_use(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// Whether the database answers a trivial query (`GET /ready`).
    pub async fn ping(&self) -> DbResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The in-place chunk lookup, where the database has one (SQLite).
    pub fn in_place_chunk_lookup(&self) -> Option<InPlaceChunkLookup> {
        self.sqlite_reader.clone().map(InPlaceChunkLookup)
    }

    /// Begins a transaction that will write. On SQLite it takes the write
    /// lock up front (`BEGIN IMMEDIATE`): a deferred transaction that reads
    /// first cannot upgrade once another writer has committed, and fails
    /// with "database is locked" instead of waiting out busy_timeout.
    /// Write transactions of this process queue for one connection.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match &self.sqlite_writer {
            Some(writer) => writer.begin_with("BEGIN IMMEDIATE").await,
            None => self.pool.begin().await,
        }
    }

    pub async fn migrate(&self) -> Result<()> {
        let shared = |list: &'static [(i64, &'static str, &'static str)]| {
            list.iter().map(|(v, d, sql)| {
                let sql = sqlx::AssertSqlSafe(for_backend(sql, self.backend)).into_sql_str();
                Migration::new(*v, (*d).into(), MigrationType::Simple, sql, false)
            })
        };
        let split = SPLIT_MIGRATIONS.iter().map(|(v, d, sqlite, postgres)| {
            let (sql, no_tx) = match self.backend {
                Backend::Sqlite => (*sqlite, true),
                Backend::Postgres => (*postgres, false),
            };
            let sql = sqlx::AssertSqlSafe(sql.to_string()).into_sql_str();
            Migration::new(*v, (*d).into(), MigrationType::Simple, sql, no_tx)
        });
        let migrations = shared(MIGRATIONS)
            .chain(split)
            .chain(shared(LATER_MIGRATIONS))
            .collect();
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await
            .context("database migration failed")?;
        Ok(())
    }
}

/// Hides the password in a database URL for error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Backend {
    /// The one place the backend is told from configuration.
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }

    /// Like `placeholders`, for a statement whose every parameter comes from
    /// this call (bound in order of appearance): on SQLite they are
    /// anonymous `?`. sqlx asks SQLite the name of every parameter of a
    /// `$N` statement, and SQLite finds each by walking the statement's
    /// list of names: quadratic in a batch's parameters, it was half of an
    /// upload's commit (500 parameters a statement). A `$N` elsewhere in the
    /// statement would be numbered apart from these, so there is none.
    pub fn placeholders(self, first: usize, n: usize) -> String {
        match self {
            Backend::Sqlite => vec!["?"; n].join(", "),
            Backend::Postgres => placeholders(first, n),
        }
    }
}

/// `$first, $first+1, ...` for `n` values: builds IN lists and multi-row
/// VALUES for batched statements.
pub fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_reach_is_told_apart_from_a_failed_statement() {
        for (e, unavailable) in [
            (sqlx::Error::PoolTimedOut, true),
            (sqlx::Error::PoolClosed, true),
            (
                sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
                true,
            ),
            (sqlx::Error::RowNotFound, false),
            (sqlx::Error::ColumnNotFound("x".into()), false),
        ] {
            let what = format!("{e:?}");
            assert_eq!(is_unavailable(&e), unavailable, "{what}");
            assert_eq!(
                matches!(DbError::from(e), DbError::Unavailable(_)),
                unavailable,
                "{what}"
            );
        }
    }
}
