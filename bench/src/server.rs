//! The provenixd under test, started exactly as a user would with the
//! embedded defaults (SQLite and local storage under a fresh HOME: the
//! tests' `FirstRun` fixture), and what the bench reads of it: its peak
//! memory and the SQLite database the defaults put under HOME.

use anyhow::{bail, Context, Result};
use provenix_tests::FirstRun;
use std::path::{Path, PathBuf};
use std::process::Stdio;

pub struct Provenixd {
    server: FirstRun,
    pub url: String,
    pub root_token: String,
    pub home: PathBuf,
}

impl Provenixd {
    pub fn start(bin_dir: &Path, work: &Path) -> Result<Provenixd> {
        let home = work.join("server-home");
        std::fs::create_dir_all(&home)?;
        let server = FirstRun::start(&bin_dir.join("provenixd"), &home, |c| {
            c.env("PROVENIX_LOG", "warn").stderr(Stdio::inherit());
        });
        // The first run prints `provenix login local URL TOKEN`.
        let login = server.login.clone().unwrap_or_default();
        let (url, root_token) = match login.split_whitespace().collect::<Vec<_>>()[..] {
            ["local", url, token] => (url.to_string(), token.to_string()),
            _ => bail!("provenixd printed no `provenix login local URL TOKEN` line"),
        };
        Ok(Provenixd {
            server,
            url,
            root_token,
            home,
        })
    }

    /// Stops the server, adds `toml` to the config its first run wrote,
    /// and starts it again (a new port; the same data and root token).
    pub fn restart_with(&mut self, bin_dir: &Path, toml: &str) -> Result<()> {
        let _ = self.server.child.kill();
        let _ = self.server.child.wait();
        let config = self.home.join(".config/provenix/server.toml");
        let mut text = std::fs::read_to_string(&config)?;
        text.push('\n');
        text.push_str(toml);
        std::fs::write(&config, text)?;
        self.server = FirstRun::start(&bin_dir.join("provenixd"), &self.home, |c| {
            c.env("PROVENIX_LOG", "warn").stderr(Stdio::inherit());
        });
        self.url = self.server.url.clone();
        Ok(())
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
        std::fs::write(format!("/proc/{}/clear_refs", self.server.child.id()), "5")
            .context("cannot reset the server's peak RSS")
    }

    /// Peak resident set size since the last reset, in MiB.
    pub fn peak_rss_mib(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server.child.id()))?;
        for line in status.lines() {
            if let Some(kb) = line.strip_prefix("VmHWM:") {
                let kb: f64 = kb.trim().trim_end_matches("kB").trim().parse()?;
                return Ok(kb / 1024.0);
            }
        }
        bail!("no VmHWM in /proc status")
    }
}
