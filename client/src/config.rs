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
        let cfg = self.servers.get(&server).with_context(|| {
            format!("no server named {server:?}: run `provenix login {server} URL [TOKEN]`")
        })?;
        Ok((server, cfg.clone(), cache))
    }
}
