//! A real S3-compatible server per test: `s3s-fs` (from crates.io, installed
//! by scripts/test-all.sh), serving a directory on a loopback port. It checks
//! SigV4 signatures, so the credentials object_store sends are exercised.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "provenix-test-access";
pub const SECRET_KEY: &str = "provenix-test-secret-key-0123456789";
pub const BUCKET: &str = "provenix";

pub struct S3Server {
    pub endpoint: String,
    pub root: tempfile::TempDir,
    child: Child,
}

/// Where `cargo install` put s3s-fs.
fn s3s_fs() -> PathBuf {
    if let Ok(p) = which("s3s-fs") {
        return p;
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("HOME or CARGO_HOME");
    let p = home.join("bin/s3s-fs");
    assert!(
        p.exists(),
        "s3s-fs is not installed: run the tests through scripts/test-all.sh, which installs it"
    );
    p
}

fn which(name: &str) -> Result<PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

impl S3Server {
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        // A bucket is a directory.
        std::fs::create_dir_all(root.path().join(BUCKET)).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn s3s-fs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
            child,
        }
    }

    /// The `[storage]` section for a server using this bucket.
    pub fn storage_toml(&self) -> String {
        self.storage_toml_via(&self.endpoint, "")
    }

    /// The same, reaching the bucket at `endpoint` (a proxy in front of
    /// it), with `settings` (more `[storage]` keys) added.
    pub fn storage_toml_via(&self, endpoint: &str, settings: &str) -> String {
        format!(
            "[storage]\ntype = \"s3\"\nregion = \"us-east-1\"\nbucket = \"{BUCKET}\"\nendpoint = \"{endpoint}\"\n{settings}\n[storage.credentials]\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n"
        )
    }

    /// The directory holding the bucket's objects.
    pub fn bucket_dir(&self) -> PathBuf {
        self.root.path().join(BUCKET)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
