//! Fixtures shared by the end-to-end tests: a real `provenixd` process per
//! test on a random port, the real `provenix` client with its own config
//! directory, private Nix stores driven by Debian's nix-bin, and a fresh
//! PostgreSQL database per test.

pub mod ci;
pub mod http;
pub mod nix;
pub mod oidc;
pub mod s3;
pub mod server;

pub use nix::NixStore;
pub use server::{Backend, Client, ObjectStorage, TestServer};

use std::path::PathBuf;

/// Where cargo put the workspace binaries (next to this test executable).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps");
    let p = dir.join(name);
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
