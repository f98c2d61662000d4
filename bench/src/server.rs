//! The provenixd under test, started exactly as a user would with the
//! embedded defaults (SQLite and local storage under a fresh HOME), and the
//! `provenix` client logged in to it.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Provenixd {
    child: Child,
    pub url: String,
    pub root_token: String,
    pub home: PathBuf,
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Provenixd {
    pub fn start(bin_dir: &Path, work: &Path) -> Result<Provenixd> {
        let home = work.join("server-home");
        std::fs::create_dir_all(&home)?;
        let port = free_port()?;
        let mut child = Command::new(bin_dir.join("provenixd"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("HOME", &home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env("PROVENIX_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start provenixd")?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        // The first run prints `provenix login local URL TOKEN`.
        let (url, root_token) = loop {
            let Some(line) = lines.next() else {
                bail!("provenixd exited before printing its login line");
            };
            let line = line?;
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["provenix", "login", "local", url, token] = words[..] {
                break (url.to_string(), token.to_string());
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let server = Provenixd {
            child,
            url,
            root_token,
            home,
        };
        for _ in 0..100 {
            if crate::curl_status(&format!("{}/", server.url)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        bail!("provenixd did not answer on {}", server.url)
    }

    /// The SQLite database the default config put under HOME.
    pub fn database(&self) -> Result<PathBuf> {
        let config = std::fs::read_to_string(self.home.join(".config/provenix/server.toml"))?;
        for line in config.lines() {
            if let Some(url) = line.trim().strip_prefix("url = \"sqlite://") {
                let path = url.split(['?', '"']).next().unwrap_or_default();
                return Ok(PathBuf::from(path));
            }
        }
        bail!("no sqlite url in the default config")
    }

    /// Forgets the peak resident set size so far (Linux `clear_refs` 5).
    pub fn reset_peak_rss(&self) -> Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
            .context("cannot reset the server's peak RSS")
    }

    /// Peak resident set size since the last reset, in MiB.
    pub fn peak_rss_mib(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        for line in status.lines() {
            if let Some(kb) = line.strip_prefix("VmHWM:") {
                let kb: f64 = kb.trim().trim_end_matches("kB").trim().parse()?;
                return Ok(kb / 1024.0);
            }
        }
        bail!("no VmHWM in /proc status")
    }
}

impl Drop for Provenixd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `provenix` client with its own config directory.
pub struct Client {
    bin: PathBuf,
    home: PathBuf,
}

impl Client {
    pub fn new(bin_dir: &Path, work: &Path) -> Result<Client> {
        let home = work.join("client-home");
        std::fs::create_dir_all(&home)?;
        Ok(Client {
            bin: bin_dir.join("provenix"),
            home,
        })
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("HOME", &self.home)
            .env_remove("XDG_CONFIG_HOME")
            // Not a GitHub Actions job even if the bench runs in one.
            .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL");
        c
    }

    pub fn run(&self, args: &[&str]) -> Result<String> {
        crate::output(self.command().args(args))
    }
}
