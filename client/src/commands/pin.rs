//! `provenix pin CACHE NAME PATH [--keep-revisions N]`, `pin list`, `pin
//! remove`, `pin history`: named paths a cache keeps, with their closures,
//! from garbage collection.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use provenix_provenance::pin::PinRequest;

use super::client_for;
use crate::time::format_time;

/// Keep a path and its closure from garbage collection (retention and size
/// limits), under a name. Re-pinning a name adds a revision and keeps the
/// newest --keep-revisions of them.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct PinArgs {
    #[command(subcommand)]
    action: Option<PinAction>,
    /// The cache ([SERVER:]CACHE).
    #[arg(required = true)]
    cache: Option<String>,
    /// The pin's name, e.g. nixos-system.
    #[arg(required = true)]
    name: Option<String>,
    /// The store path to pin, or a link to one (./result).
    #[arg(required = true)]
    path: Option<String>,
    /// How many of this name's newest revisions stay pinned.
    #[arg(long, default_value_t = provenix_provenance::pin::default_keep_revisions())]
    keep_revisions: i64,
}

#[derive(Subcommand)]
enum PinAction {
    /// List a cache's pins and their revisions.
    List {
        cache: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a pin (all its revisions).
    Remove { cache: String, name: String },
    /// Show who changed a cache's pins, newest first (needs audit access).
    History {
        cache: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: PinArgs) -> Result<()> {
    match args.action {
        Some(PinAction::List { cache, json }) => {
            let (api, _, cache) = client_for(&cache)?;
            let pins = api.pins(&cache).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&pins)?);
                return Ok(());
            }
            if pins.is_empty() {
                println!("cache \"{cache}\" has no pins");
            }
            for pin in pins {
                println!("{} (keeps {} revisions)", pin.name, pin.keep_revisions);
                for r in pin.revisions {
                    let held = if r.held {
                        ""
                    } else {
                        "  (no longer in the cache)"
                    };
                    println!(
                        "  #{} {} pinned {}{held}",
                        r.revision,
                        r.store_path,
                        format_time(r.created_at)
                    );
                }
            }
        }
        Some(PinAction::Remove { cache, name }) => {
            let (api, _, cache) = client_for(&cache)?;
            api.remove_pin(&cache, &name).await?;
            println!("Removed pin {name:?} from \"{cache}\"");
        }
        Some(PinAction::History { cache, json }) => {
            let (api, _, cache) = client_for(&cache)?;
            let changes = api.pin_changes(&cache).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&changes)?);
                return Ok(());
            }
            for c in changes {
                let what = match &c.store_path {
                    Some(p) => format!("{} {} -> {p}", c.action, c.name),
                    None => format!("{} {}", c.action, c.name),
                };
                let dropped = if c.dropped.is_empty() {
                    String::new()
                } else {
                    format!(" (released {})", c.dropped.join(", "))
                };
                println!(
                    "{} by {}: {what}{dropped}",
                    format_time(c.created_at),
                    c.actor
                );
            }
        }
        None => {
            // clap requires all three when no subcommand is given.
            let (cache, name, path) = (
                args.cache.context("CACHE is required")?,
                args.name.context("NAME is required")?,
                args.path.context("PATH is required")?,
            );
            let (api, _, cache) = client_for(&cache)?;
            let store_dir = api.cache_info(&cache).await?.store_dir;
            let store_path = resolve_store_path(&path, &store_dir)?;
            let answer = api
                .pin(
                    &cache,
                    &name,
                    &PinRequest {
                        store_path: store_path.clone(),
                        keep_revisions: args.keep_revisions,
                    },
                )
                .await?;
            let revision = answer.pin.revisions.first().map_or(0, |r| r.revision);
            if answer.changed {
                println!(
                    "📌 Pinned {name:?} in \"{cache}\" to {store_path} (revision {revision}, keeping {})",
                    answer.pin.keep_revisions
                );
            } else {
                println!("{name:?} in \"{cache}\" is pinned to {store_path} already (revision {revision})");
            }
        }
    }
    Ok(())
}

/// The store path `arg` names: itself, or where a link such as `./result`
/// points, cut to the top-level store path.
fn resolve_store_path(arg: &str, store_dir: &str) -> Result<String> {
    let prefix = format!("{}/", store_dir.trim_end_matches('/'));
    let full = if arg.starts_with(&prefix) {
        arg.to_string()
    } else {
        let real = std::fs::canonicalize(arg)
            .with_context(|| format!("{arg} is neither a store path nor a link to one"))?;
        real.to_string_lossy().into_owned()
    };
    let rest = full
        .strip_prefix(&prefix)
        .with_context(|| format!("{full} is not in the cache's store {store_dir}"))?;
    let top = rest.split('/').next().unwrap_or(rest);
    Ok(format!("{prefix}{top}"))
}

#[cfg(test)]
mod tests {
    use super::resolve_store_path;

    #[test]
    fn store_paths_and_paths_inside_them() {
        let p = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello";
        assert_eq!(resolve_store_path(p, "/nix/store").unwrap(), p);
        assert_eq!(
            resolve_store_path(&format!("{p}/bin/hello"), "/nix/store").unwrap(),
            p
        );
        assert!(resolve_store_path("/definitely/not/here", "/nix/store").is_err());
    }
}
