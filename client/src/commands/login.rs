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
    /// Read the token to save from standard input (its first line), so it
    /// is on no command line (`ps` and shell history show those).
    #[arg(long, conflicts_with_all = ["token", "token_command"])]
    token_stdin: bool,
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
        token_stdin,
        set_default,
    } = args;
    let token = if token_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the token from standard input")?;
        let line = line.trim();
        if line.is_empty() {
            bail!("no token on standard input");
        }
        Some(line.to_string())
    } else {
        token
    };
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
