//! `provenix use CACHE`: makes Nix substitute from the cache, trusting its
//! keys, with the token in a netrc (Nix sends netrc credentials as Basic auth).

use anyhow::{Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

use super::client_for;
use crate::api::CacheInfo;

/// Configure Nix to substitute from a cache (nix.conf, trusted keys, netrc).
#[derive(Args)]
pub struct UseArgs {
    cache: String,
}

pub async fn run(args: UseArgs) -> Result<()> {
    let (api, server, cache) = client_for(&args.cache)?;
    let info = api.cache_info(&cache).await?;
    let conf = configure_nix(&info, server.token.as_deref())?;
    println!(
        "Configuring Nix to use \"{cache}\" ({}), trusting {}",
        info.substituter_endpoint, info.public_key
    );
    println!("Wrote {}", conf.display());
    Ok(())
}

/// Adds `value` to a space-separated `key = ...` line, or appends the line.
pub fn add_to_setting(conf: &str, key: &str, value: &str) -> String {
    let mut found = false;
    let mut out: Vec<String> = conf
        .lines()
        .map(|line| {
            let Some((k, v)) = line.split_once('=') else {
                return line.to_string();
            };
            if k.trim() != key {
                return line.to_string();
            }
            found = true;
            if v.split_whitespace().any(|x| x == value) {
                line.to_string()
            } else {
                format!("{} = {} {value}", key, v.trim())
            }
        })
        .collect();
    if !found {
        out.push(format!("{key} = {value}"));
    }
    out.join("\n") + "\n"
}

pub fn get_setting(conf: &str, key: &str) -> Option<String> {
    conf.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// Sets the `machine HOST` entry's password to `token`, keeping other entries.
pub fn set_netrc_entry(netrc: &str, host: &str, token: &str) -> String {
    let mut out: Vec<String> = netrc
        .lines()
        .filter(|l| {
            l.split_whitespace().nth(1) != Some(host) || !l.trim_start().starts_with("machine")
        })
        .map(str::to_string)
        .collect();
    out.push(format!("machine {host} password {token}"));
    out.join("\n") + "\n"
}

fn read(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub fn configure_nix(info: &CacheInfo, token: Option<&str>) -> Result<PathBuf> {
    let nix_dir = crate::config::config_home()?.join("nix");
    std::fs::create_dir_all(&nix_dir)?;
    let conf_path = nix_dir.join("nix.conf");
    let mut conf = read(&conf_path)?;
    conf = add_to_setting(&conf, "extra-substituters", &info.substituter_endpoint);
    for key in &info.signing_keys {
        conf = add_to_setting(&conf, "extra-trusted-public-keys", &key.public_key);
    }
    if let Some(token) = token {
        let netrc_path = match get_setting(&conf, "netrc-file") {
            Some(p) => PathBuf::from(p),
            None => {
                let p = nix_dir.join("netrc");
                conf = add_to_setting(&conf, "netrc-file", &p.display().to_string());
                p
            }
        };
        let url = reqwest::Url::parse(&info.substituter_endpoint)
            .context("server gave an invalid substituter URL")?;
        let host = url.host_str().context("substituter URL has no host")?;
        let netrc = set_netrc_entry(&read(&netrc_path)?, host, token);
        crate::files::write_private(&netrc_path, &netrc)?;
    }
    std::fs::write(&conf_path, conf)
        .with_context(|| format!("cannot write {}", conf_path.display()))?;
    Ok(conf_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_settings_idempotently() {
        let c = add_to_setting("", "extra-substituters", "http://a/x");
        let c = add_to_setting(&c, "extra-substituters", "http://a/x");
        let c = add_to_setting(&c, "extra-substituters", "http://b/y");
        assert_eq!(c, "extra-substituters = http://a/x http://b/y\n");
        assert_eq!(
            get_setting(&c, "extra-substituters").unwrap(),
            "http://a/x http://b/y"
        );
    }

    #[test]
    fn replaces_only_its_host_in_netrc() {
        let n = set_netrc_entry(
            "machine other password p\nmachine h password old\n",
            "h",
            "new",
        );
        assert_eq!(n, "machine other password p\nmachine h password new\n");
    }
}
