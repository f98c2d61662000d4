//! The client's own config: servers logged in to, and the default one.
//! `$XDG_CONFIG_HOME/provenix/config.toml`, readable by its owner only
//! (it holds tokens).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClientConfig {
    pub default_server: Option<String>,
    #[serde(default)]
    pub servers: BTreeMap<String, ServerConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerConfig {
    pub endpoint: String,
    pub token: Option<String>,
    /// A command (run by `sh -c` when a command needs this server's token)
    /// whose standard output is the token: for secret managers.
    #[serde(
        default,
        rename = "token-command",
        skip_serializing_if = "Option::is_none"
    )]
    pub token_command: Option<String>,
}

/// The environment variable a token may come from, ahead of every other
/// source.
pub const TOKEN_ENV: &str = "PROVENIX_TOKEN";

/// The variable holding the token for server `name`: `PROVENIX_TOKEN_`
/// and the name in capitals, other characters as `_` (`ci-eu` →
/// `PROVENIX_TOKEN_CI_EU`).
pub fn token_env_for(name: &str) -> String {
    let suffix: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{TOKEN_ENV}_{suffix}")
}

/// `--token-file FILE`, given on the command line (before any command's
/// server is resolved).
static TOKEN_FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

pub fn set_token_file(file: PathBuf) {
    let _ = TOKEN_FILE.set(file);
}

impl ServerConfig {
    /// This server with the token a command uses, from the first source
    /// that has one (docs/client.md): `PROVENIX_TOKEN`, `--token-file
    /// FILE`, the server's `token-command`, the token saved by `login`.
    /// Errors name the source, never the token.
    fn with_token(mut self, name: &str, is_default: bool) -> Result<ServerConfig> {
        let from_env = |var: &str| std::env::var(var).ok().filter(|t| !t.trim().is_empty());
        // PROVENIX_TOKEN goes to the default server only: a command naming
        // another server must not send it there (found by the attack
        // review); PROVENIX_TOKEN_<NAME> is for a named one.
        let env_token = from_env(&token_env_for(name))
            .or_else(|| is_default.then(|| from_env(TOKEN_ENV)).flatten());
        if let Some(t) = env_token {
            self.token = Some(t.trim().to_string());
        } else if let Some(file) = TOKEN_FILE.get() {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the token file {}", file.display()))?;
            let token = text.trim();
            if token.is_empty() {
                bail!("the token file {} is empty", file.display());
            }
            self.token = Some(token.to_string());
        } else if let Some(command) = &self.token_command {
            self.token = Some(run_token_command(name, command)?);
        }
        Ok(self)
    }
}

/// Runs a server's `token-command`: its standard output, trimmed, is the
/// token; its standard error goes to the user (a secret manager's prompt).
fn run_token_command(server: &str, command: &str) -> Result<String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run the token-command of server {server:?}"))?;
    if !out.status.success() {
        bail!(
            "the token-command of server {server:?} failed ({})",
            out.status
        );
    }
    let token = String::from_utf8(out.stdout)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty() && !t.contains(char::is_whitespace))
        .with_context(|| {
            format!("the token-command of server {server:?} printed no token (one line, no spaces)")
        })?;
    Ok(token)
}

pub fn config_home() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(x));
    }
    let home = std::env::var_os("HOME").context("neither XDG_CONFIG_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".config"))
}

fn path() -> Result<PathBuf> {
    Ok(config_home()?.join("provenix/config.toml"))
}

impl ClientConfig {
    pub fn load() -> Result<ClientConfig> {
        let p = path()?;
        match std::fs::read_to_string(&p) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("invalid client config {}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientConfig::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
        }
    }

    pub fn save(&self) -> Result<()> {
        let p = path()?;
        std::fs::create_dir_all(p.parent().expect("has parent"))?;
        crate::files::write_private(&p, &toml::to_string(self)?)
    }

    /// Resolves `[SERVER:]CACHE` to (server name, server, cache).
    pub fn resolve(&self, reference: &str) -> Result<(String, ServerConfig, String)> {
        let (server, cache) = match reference.split_once(':') {
            Some((s, c)) => (s.to_string(), c.to_string()),
            None => {
                let s = self.default_server.clone().context(
                    "no server given and no default server: run `provenix login NAME URL [TOKEN]` first",
                )?;
                (s, reference.to_string())
            }
        };
        if cache.is_empty() {
            bail!("no cache name in {reference:?}");
        }
        let cfg = self.server(&server)?;
        Ok((server, cfg, cache))
    }

    /// The server saved as `name`, with the token a command uses (see
    /// [`ServerConfig::with_token`]).
    pub fn server(&self, name: &str) -> Result<ServerConfig> {
        self.servers
            .get(name)
            .with_context(|| {
                format!("no server named {name:?}: run `provenix login {name} URL [TOKEN]`")
            })?
            .clone()
            .with_token(name, self.default_server.as_deref() == Some(name))
    }

    /// The default server's name.
    pub fn default_name(&self) -> Result<String> {
        self.default_server
            .clone()
            .context("no default server: run `provenix login NAME URL [TOKEN]` first")
    }
}
