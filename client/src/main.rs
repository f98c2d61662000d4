//! provenix: the command-line client. Mirrors Attic's CLI.
//!
//! `cli` parses the command line and hands it to the command's module under
//! `commands`; the other modules are what the commands share.

mod api;
mod cli;
mod commands;
mod config;
mod exchange;
mod files;
mod nar_dump;
mod nix;
mod push;
mod queue;
mod time;
mod tlog;
mod upload_parts;

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = cli::Cli::parse();
    if let Err(e) = cli::run(cli).await {
        // One line: the cause chain joined, as scripts and people read it.
        eprintln!("provenix: error: {}", tlog::plain(&format!("{e:#}")));
        std::process::exit(exit_code(&e));
    }
}

/// 3 when a transparency log failed a check, 2 when `log monitor
/// --unexpected` found entries, 1 otherwise: cron jobs and CI scripts tell
/// tampering from an unreachable server.
fn exit_code(e: &anyhow::Error) -> i32 {
    if tlog::is_tampered(e) {
        3
    } else if e
        .chain()
        .any(|c| c.is::<commands::log_monitor::UnexpectedEntries>())
    {
        2
    } else {
        1
    }
}
