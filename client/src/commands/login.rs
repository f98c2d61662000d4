//! `provenix login`: saves a server and its token in the client's config.

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::config::{ClientConfig, ServerConfig};

/// Save a server and its token: `provenix login NAME URL [TOKEN]`.
#[derive(Args)]
pub struct LoginArgs {
    name: String,
    url: String,
    token: Option<String>,
    /// Run COMMAND (by `sh -c`) for the token whenever one is needed, in
    /// place of saving it: for secret managers (`pass show provenix`).
    #[arg(long, value_name = "COMMAND", conflicts_with = "token")]
    token_command: Option<String>,
    /// Make this the default server (the first login always is).
    #[arg(long)]
    set_default: bool,
}

pub fn run(args: LoginArgs) -> Result<()> {
    let LoginArgs {
        name,
        url,
        token,
        token_command,
        set_default,
    } = args;
    let parsed = reqwest::Url::parse(&url).with_context(|| format!("invalid URL {url:?}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("server URL must be http:// or https://");
    }
    let mut cfg = ClientConfig::load()?;
    let first = cfg.servers.is_empty();
    cfg.servers.insert(
        name.clone(),
        ServerConfig {
            endpoint: url,
            token,
            token_command,
        },
    );
    if first || set_default || cfg.default_server.is_none() {
        cfg.default_server = Some(name.clone());
    }
    cfg.save()?;
    println!("✍️ Configured server \"{name}\"");
    Ok(())
}
