//! `provenix keys list`: the short-term keys issued for a cache, searched
//! with the same filters as `audit`.

use anyhow::Result;
use clap::Subcommand;
use provenix_provenance::audit::{KeyRecord, Page};

use super::audit::{more, AuditFilters};
use super::client_for;
use crate::time::format_time;

/// Keys issued for a cache.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// List the short-term keys issued for a cache, newest first.
    List {
        cache: String,
        #[command(flatten)]
        filters: AuditFilters,
    },
}

pub async fn run(command: KeysCommand) -> Result<()> {
    let KeysCommand::List { cache, filters } = command;
    let (api, _, cache) = client_for(&cache)?;
    let page: Page<KeyRecord> = api.audit(&cache, "keys", &filters.query()?).await?;
    if filters.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    println!(
        "{:<32}  {:<20}  {:<8}  {:<6}  SUBJECT",
        "KEY", "ISSUED", "STATUS", "KIND"
    );
    for k in &page.items {
        println!(
            "{:<32}  {:<20}  {:<8}  {:<6}  {}",
            k.key_id,
            format_time(k.not_before),
            k.status,
            k.kind,
            k.subject
        );
    }
    more(page.next_cursor);
    Ok(())
}
