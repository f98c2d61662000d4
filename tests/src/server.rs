//! A real provenixd process per test, and the provenix client against it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{bin, run};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server the test command started (see scripts/test-all.sh).
pub fn postgres_admin_url() -> String {
    std::env::var("PROVENIX_TEST_POSTGRES_URL").expect(
        "PROVENIX_TEST_POSTGRES_URL is not set: run the tests through scripts/test-all.sh, which starts PostgreSQL",
    )
}

/// Creates an empty database for one test and returns its URL.
pub fn fresh_postgres_database() -> String {
    let admin = postgres_admin_url();
    let name = format!("provenix_test_{}_{}", std::process::id(), rand_suffix());
    let (ok, _, err) = run(Command::new("psql")
        .arg(&admin)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
        .arg(format!("CREATE DATABASE {name}")));
    assert!(ok, "cannot create database {name}: {err}");
    match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("bad PROVENIX_TEST_POSTGRES_URL {admin}"),
    }
}

/// Unique within this process (counter) and across runs (clock).
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (nanos << 8) | COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Where chunk objects go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectStorage {
    Local,
    /// A real S3-compatible server (s3s-fs) started for the test.
    S3,
}

pub struct TestServer {
    pub dir: tempfile::TempDir,
    /// Set when the server stores objects in S3 (kept alive with it).
    pub s3: Option<crate::s3::S3Server>,
    pub config_path: PathBuf,
    pub url: String,
    pub root_token: String,
    child: Child,
}

pub const TEST_SECRET: &str = "dGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQ=";

impl TestServer {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory now, in KiB (Linux's VmRSS).
    pub fn resident_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    pub fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, "")
    }

    /// Starts a server whose config has `extra` appended (TOML).
    pub fn start_with(backend: Backend, extra: &str) -> TestServer {
        Self::start_on(backend, ObjectStorage::Local, extra)
    }

    /// Starts a server on the given database and object storage.
    pub fn start_on(backend: Backend, storage: ObjectStorage, extra: &str) -> TestServer {
        let s3 = (storage == ObjectStorage::S3).then(crate::s3::S3Server::start);
        let storage_toml = s3.as_ref().map(|s3| s3.storage_toml());
        Self::start_configured(backend, None, s3, storage_toml, extra)
    }

    /// On `s3`, reached at `endpoint` (a fault proxy in front of it), with
    /// `storage_extra` added to `[storage]` (timeouts, retries).
    pub fn start_on_s3_through(
        backend: Backend,
        s3: crate::s3::S3Server,
        endpoint: &str,
        storage_extra: &str,
    ) -> TestServer {
        let storage_toml = s3.storage_toml_via(endpoint, storage_extra);
        Self::start_configured(backend, None, Some(s3), Some(storage_toml), "")
    }

    /// With chunks stored under `dir` on the local disk (a small
    /// filesystem a test made, say).
    pub fn start_on_local_dir(backend: Backend, dir: &Path) -> TestServer {
        let storage_toml = format!(
            "[storage]\ntype = \"local\"\npath = \"{}\"\n",
            dir.display()
        );
        Self::start_configured(backend, None, None, Some(storage_toml), "")
    }

    /// On PostgreSQL at `url` (a cluster of the test's own), local storage.
    pub fn start_on_database(url: &str) -> TestServer {
        Self::start_configured(Backend::Postgres, Some(url.to_string()), None, None, "")
    }

    /// `own_database`: a database URL the test made, instead of a fresh
    /// database of the backend's.
    fn start_configured(
        backend: Backend,
        own_database: Option<String>,
        s3: Option<crate::s3::S3Server>,
        storage_toml: Option<String>,
        extra: &str,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage_toml = storage_toml.unwrap_or_else(|| {
            format!(
                "[storage]\ntype = \"local\"\npath = \"{}/storage\"\n",
                dir.path().display()
            )
        });
        let db_url = match (own_database, backend) {
            (Some(url), _) => url,
            (None, Backend::Sqlite) => {
                format!("sqlite://{}/server.db?mode=rwc", dir.path().display())
            }
            (None, Backend::Postgres) => fresh_postgres_database(),
        };
        let config = format!(
            r#"listen = "127.0.0.1:0"
token-hs256-secret-base64 = "{TEST_SECRET}"
{extra}
[database]
url = "{db_url}"

{storage_toml}"#
        );
        let config_path = dir.path().join("server.toml");
        std::fs::write(&config_path, config).unwrap();
        let (child, url) = spawn_server(&config_path, dir.path(), &[]);
        let mut s = TestServer {
            dir,
            s3,
            config_path,
            url,
            root_token: String::new(),
            child,
        };
        s.root_token = s.make_token(&[
            "--sub",
            "root",
            "--validity",
            "1 day",
            "--pull",
            "*",
            "--push",
            "*",
            "--delete",
            "*",
            "--create-cache",
            "*",
            "--configure-cache",
            "*",
            "--configure-cache-retention",
            "*",
            "--destroy-cache",
            "*",
        ]);
        s
    }

    /// `kill -9` the server process (no cleanup, as in a crash).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same config and data; `url` changes
    /// (the port is picked afresh).
    pub fn restart(&mut self) {
        self.kill9();
        let (child, url) = spawn_server(&self.config_path, self.dir.path(), &[]);
        self.child = child;
        self.url = url;
    }

    /// Starts the server again on the same config, data and port, so
    /// clients configured for it reach it again.
    pub fn restart_on_same_port(&mut self) {
        self.kill9();
        let addr = self.url.trim_start_matches("http://").to_string();
        let (child, url) = spawn_server(&self.config_path, self.dir.path(), &["--listen", &addr]);
        self.child = child;
        self.url = url;
    }

    /// `provenixd -f CONFIG make-token ARGS`: the token on the last line.
    pub fn make_token(&self, args: &[&str]) -> String {
        let (ok, out, err) = run(Command::new(bin("provenixd"))
            .arg("-f")
            .arg(&self.config_path)
            .arg("make-token")
            .args(args));
        assert!(ok, "make-token failed: {err}");
        out.lines().last().expect("a token").trim().to_string()
    }

    /// A token for `sub`, valid a day, holding each of `permissions`
    /// (`make-token` flag names without `--`: `pull`, `revoke`, ...) on
    /// every cache.
    pub fn token_with(&self, sub: &str, permissions: &[&str]) -> String {
        let flags: Vec<String> = permissions.iter().map(|p| format!("--{p}")).collect();
        let mut args = vec!["--sub", sub, "--validity", "1 day"];
        for f in &flags {
            args.extend([f.as_str(), "*"]);
        }
        self.make_token(&args)
    }

    /// A token for `sub` that may push to and pull from `cache`, for an hour.
    pub fn push_token(&self, sub: &str, cache: &str) -> String {
        self.make_token(&[
            "--sub",
            sub,
            "--validity",
            "1h",
            "--push",
            cache,
            "--pull",
            cache,
        ])
    }

    /// Runs provenixd in another mode against this server's config.
    pub fn run_mode(&self, mode: &str) -> (bool, String, String) {
        run(Command::new(bin("provenixd"))
            .arg("-f")
            .arg(&self.config_path)
            .args(["--mode", mode]))
    }

    /// Chunks the database records, counted by `--mode verify` (which reads
    /// each back from its stored object and fails on any damage).
    pub fn verified_chunks(&self) -> u64 {
        let (ok, out, err) = self.run_mode("verify");
        assert!(ok, "verify failed: {out}{err}");
        let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        report["checked_chunks"].as_u64().unwrap()
    }

    /// `garbage-collector-once` with no chunk grace period (unused chunks go
    /// now); returns its JSON report.
    pub fn gc_without_grace(&self) -> String {
        let grace0 = self.dir.path().join("grace0.toml");
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        std::fs::write(
            &grace0,
            format!("{text}\n[garbage-collection]\nchunk-grace-period = \"0s\"\n"),
        )
        .unwrap();
        let (ok, out, err) = run(Command::new(bin("provenixd"))
            .arg("-f")
            .arg(&grace0)
            .args(["--mode", "garbage-collector-once"]));
        assert!(ok, "{err}");
        out
    }

    pub fn storage_dir(&self) -> PathBuf {
        match &self.s3 {
            Some(s3) => s3.bucket_dir(),
            None => self.dir.path().join("storage"),
        }
    }

    /// Number of stored objects (packs of chunks).
    pub fn stored_objects(&self) -> usize {
        fn count(p: &Path) -> usize {
            std::fs::read_dir(p).map_or(0, |rd| {
                rd.flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            count(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
        }
        count(&self.storage_dir().join("chunks"))
    }

    pub fn client(&self) -> Client {
        let c = Client::new();
        c.ok(&["login", "test", &self.url, &self.root_token]);
        c
    }

    pub fn client_with_token(&self, token: &str) -> Client {
        let c = Client::new();
        c.ok(&["login", "test", &self.url, token]);
        c
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- provenixd log ----\n{}", self.log());
        }
    }
}

/// Spawns provenixd and waits for its "listening on" line.
pub fn spawn_server(config: &Path, dir: &Path, extra_args: &[&str]) -> (Child, String) {
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut cmd = Command::new(bin("provenixd"));
    cmd.arg("-f").arg(config).args(extra_args).stderr(log);
    match start_listening(&mut cmd) {
        Some(started) => (started.child, started.url),
        None => panic!(
            "provenixd exited before listening: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        ),
    }
}

/// A provenixd that printed `provenixd listening on URL`.
pub struct Listening {
    pub child: Child,
    pub url: String,
    /// What it printed on stdout before that line.
    pub printed: Vec<String>,
}

/// Spawns `cmd` (a provenixd) with stdout piped and reads it up to the
/// "listening on" line; None (the process reaped) if it ends first. Its
/// stdout is drained from then on, so it never blocks on a full pipe.
pub fn start_listening(cmd: &mut Command) -> Option<Listening> {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn provenixd");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = Vec::new();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(rest) = line.strip_prefix("provenixd listening on ") {
                    break rest.trim().to_string();
                }
                printed.push(line);
            }
            _ => {
                let _ = child.wait();
                return None;
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Some(Listening {
        child,
        url,
        printed,
    })
}

/// provenixd as a user starts it the first time: no config file and a
/// fresh HOME, where it writes its defaults (config, SQLite database, local
/// storage), listening on a free loopback port; it prints a `provenix
/// login` line with a root token. Killed when dropped.
pub struct FirstRun {
    pub child: Child,
    pub url: String,
    /// What follows `provenix login ` on the line it printed, if any.
    pub login: Option<String>,
}

impl FirstRun {
    /// `configure` adds to the command (environment, stderr; stderr is
    /// discarded unless it says otherwise).
    pub fn start(provenixd: &Path, home: &Path, configure: impl FnOnce(&mut Command)) -> FirstRun {
        let mut cmd = Command::new(provenixd);
        cmd.args(["--listen", "127.0.0.1:0"])
            .env("HOME", home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .stderr(Stdio::null());
        configure(&mut cmd);
        let started = start_listening(&mut cmd).expect("provenixd exited before listening");
        let login = started.printed.iter().find_map(|line| {
            line.trim()
                .strip_prefix("provenix login ")
                .map(str::to_string)
        });
        FirstRun {
            child: started.child,
            url: started.url,
            login,
        }
    }
}

impl Drop for FirstRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real `provenix` CLI with its own XDG config directory.
pub struct Client {
    pub home: tempfile::TempDir,
    program: PathBuf,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Client::with(bin("provenix"), tempfile::tempdir().unwrap())
    }

    /// The `provenix` at `program`, its config under `home`.
    pub fn with(program: PathBuf, home: tempfile::TempDir) -> Client {
        Client { home, program }
    }

    pub fn config_home(&self) -> PathBuf {
        self.home.path().join("config")
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.env("XDG_CONFIG_HOME", self.config_home())
            .env("HOME", self.home.path())
            .env_remove("NIX_REMOTE")
            .env_remove("PROVENIX_TOKEN")
            .env_remove("PROVENIX_ID_TOKEN")
            // Only tests that mean to be inside GitHub Actions are.
            .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
            .env_remove("ACTIONS_ID_TOKEN_REQUEST_TOKEN");
        c
    }

    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        run(self.command().args(args))
    }

    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
        let mut c = self.command();
        for (k, v) in env {
            c.env(k, v);
        }
        run(c.args(args))
    }

    /// Runs with `input` on standard input.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> (bool, String, String) {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.as_bytes())
            .expect("stdin written");
        let out = child.wait_with_output().expect("runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs; returns the exit code, stdout and stderr.
    pub fn status(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.command().args(args).output().expect("runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "provenix {args:?} failed:\n{err}");
        out
    }

    /// Runs and asserts success; returns stderr (where progress and summaries go).
    pub fn ok_stderr(&self, args: &[&str]) -> String {
        let (ok, _, err) = self.run(args);
        assert!(ok, "provenix {args:?} failed:\n{err}");
        err
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(
            !ok,
            "provenix {args:?} should have failed; it printed:\n{out}"
        );
        err
    }

    /// The `Public Key:` line of `provenix cache info`.
    pub fn public_key(&self, cache: &str) -> String {
        let out = self.ok(&["cache", "info", cache]);
        out.lines()
            .find_map(|l| l.strip_prefix("Public Key: "))
            .expect("a Public Key line")
            .trim()
            .to_string()
    }
}
