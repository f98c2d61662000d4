//! The security fixes, end to end against a real provenixd: each checks a
//! promise of docs/threat-model.md that an outside review found broken.

use provenix_tests::{random_bytes, Backend, NixStore, TestServer};
use std::os::unix::fs::PermissionsExt;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        out.push(path.clone());
        if path.is_dir() {
            files_under(&path, out);
        }
    }
}

/// Whatever the umask it starts with (the tests run with 022), the server's
/// database files and packs are its own alone.
#[test]
fn the_database_and_the_packs_are_not_world_readable() {
    // SAFETY: sets this test process's file-creation mask, inherited by
    // the server it starts; nothing else in this binary creates files
    // concurrently in a way that depends on it.
    unsafe {
        libc::umask(0o022);
    }
    let server = TestServer::start(Backend::Sqlite);
    let client = server.client();
    client.ok(&["cache", "create", "main"]);
    let src = NixStore::new();
    let data = random_bytes(3, 5 * 1024 * 1024);
    let path = src.add_input_addressed("secret", &[("share/secret", &data)], &[]);
    let out = client.run(&["push", "main", &path, "--store", &src.root()]);
    assert!(out.0, "push failed: {}", out.2);

    let mut made = Vec::new();
    files_under(&server.storage_dir(), &mut made);
    let packs: Vec<_> = made.iter().filter(|p| p.is_file()).collect();
    assert!(!packs.is_empty(), "the push stored no pack");
    for p in &made {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(p), want, "{}", p.display());
    }
    for name in ["server.db", "server.db-wal", "server.db-shm"] {
        let p = server.dir.path().join(name);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    assert_eq!(mode(&server.dir.path().join("server.db")), 0o600);
}
