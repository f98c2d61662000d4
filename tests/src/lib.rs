//! Fixtures shared by the end-to-end tests: a real `provenixd` process per
//! test on a random port, the real `provenix` client with its own config
//! directory, private Nix stores driven by Debian's nix-bin, and a fresh
//! PostgreSQL database per test.

pub mod ci;
pub mod fault_proxy;
pub mod http;
pub mod nginx;
pub mod nix;
pub mod oidc;
pub mod postgres;
pub mod s3;
pub mod server;

pub use nix::NixStore;
pub use server::{Backend, Client, FirstRun, ObjectStorage, TestServer};

#[doc(hidden)]
pub use pastey::paste as __paste;

use std::path::PathBuf;

/// Where cargo put the workspace binaries: beside this executable, or one
/// up from `deps/` for a test (target/<profile>/deps/NAME-HASH).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("a directory holding this executable");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().expect("target/<profile>"),
        _ => dir,
    }
    .to_path_buf()
}

/// A workspace binary, which must be built already.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// Deterministic pseudo-random bytes (xorshift), incompressible like binaries.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The host part of `http://HOST:PORT`, as a netrc `machine` names it.
pub fn host_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Runs a command, returning (success, stdout, stderr).
pub fn run(cmd: &mut std::process::Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Test functions made from one scenario function, one per backend, named
/// `<name>_sqlite` and `<name>_postgres` (as CI has always listed them):
///
/// ```text
/// provenix_tests::backend_tests! {
///     // #[test] fn push_and_pull_sqlite() { push_and_pull(Backend::Sqlite) }
///     // and push_and_pull_postgres() with Backend::Postgres.
///     fn push_and_pull => push_and_pull;
///     // #[tokio::test] async fn ..._sqlite() { bad_uploads(Backend::Sqlite).await } ...
///     async fn bad_uploads_are_refused => bad_uploads;
///     // Another test attribute instead of #[tokio::test]:
///     #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
///     async fn concurrent_uploads => concurrent_uploads;
/// }
/// ```
///
/// A block may name its own variants first, each a name suffix (or none)
/// and the scenario's arguments:
///
/// ```text
/// provenix_tests::backend_tests! {
///     for _sqlite_local(Backend::Sqlite, ObjectStorage::Local),
///         _postgres_s3(Backend::Postgres, ObjectStorage::S3);
///     async fn kill_9_mid_upload => crash_mid_upload;
/// }
/// ```
#[macro_export]
macro_rules! backend_tests {
    (for $($($suffix:ident)? ($($arg:expr),* $(,)?)),+ ; $($entries:tt)*) => {
        $crate::backend_tests!(@entries [$([$($suffix)?] ($($arg),*))+] $($entries)*);
    };
    (@entries $variants:tt) => {};
    (@entries $variants:tt #[$test:meta] async fn $name:ident => $scenario:path; $($rest:tt)*) => {
        $crate::backend_tests!(@variants $variants [$test] async $name $scenario);
        $crate::backend_tests!(@entries $variants $($rest)*);
    };
    (@entries $variants:tt async fn $name:ident => $scenario:path; $($rest:tt)*) => {
        $crate::backend_tests!(@variants $variants [tokio::test] async $name $scenario);
        $crate::backend_tests!(@entries $variants $($rest)*);
    };
    (@entries $variants:tt fn $name:ident => $scenario:path; $($rest:tt)*) => {
        $crate::backend_tests!(@variants $variants [test] sync $name $scenario);
        $crate::backend_tests!(@entries $variants $($rest)*);
    };
    (@variants [$([$($suffix:ident)?] $args:tt)+] $test:tt $kind:tt $name:ident $scenario:path) => {
        $($crate::backend_tests!(@one $test $kind [$($suffix)?] $name $scenario, $args);)+
    };
    (@one [$test:meta] async [$($suffix:ident)?] $name:ident $scenario:path, ($($arg:expr),*)) => {
        $crate::__paste! {
            #[$test]
            async fn [<$name $($suffix)?>]() {
                $scenario($($arg),*).await;
            }
        }
    };
    (@one [$test:meta] sync [$($suffix:ident)?] $name:ident $scenario:path, ($($arg:expr),*)) => {
        $crate::__paste! {
            #[$test]
            fn [<$name $($suffix)?>]() {
                $scenario($($arg),*);
            }
        }
    };
    (@ $($unexpected:tt)*) => {
        compile_error!("backend_tests!: expected `fn NAME => SCENARIO;` or `async fn NAME => SCENARIO;`");
    };
    ($($entries:tt)+) => {
        $crate::backend_tests!(
            for _sqlite($crate::Backend::Sqlite), _postgres($crate::Backend::Postgres);
            $($entries)+
        );
    };
}
