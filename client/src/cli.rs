//! The command line: the top-level parser, the `Command` enum with one
//! variant per command wrapping the clap type its module owns, and the
//! dispatch to that module's `run`.

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::commands::{
    audit, cache, check_store, keys, log, login, pin, provenance, publisher, push, queue, revoke,
    use_cache, verify, verify_attestation, watch, whoami,
};

#[derive(Parser)]
#[command(name = "provenix", version, about = "provenix binary cache client")]
pub struct Cli {
    /// Read the token from FILE (after PROVENIX_TOKEN, before the server's
    /// token-command and the token saved by `login`).
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

// A command's help text is the doc comment of the type its variant wraps.
// `provenix --help` lists the commands in this order.
#[derive(Subcommand)]
enum Command {
    Login(login::LoginArgs),
    Use(use_cache::UseArgs),
    Push(push::PushArgs),
    WatchStore(watch::WatchStoreArgs),
    WatchExec(watch::WatchExecArgs),
    /// A crash-safe queue of paths to push, for Nix's post-build-hook.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    #[command(subcommand)]
    Publisher(publisher::PublisherCommand),
    Pin(pin::PinArgs),
    Provenance(provenance::ProvenanceArgs),
    Audit(audit::AuditArgs),
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    Revoke(revoke::RevokeArgs),
    CheckStore(check_store::CheckStoreArgs),
    VerifyAttestation(verify_attestation::VerifyAttestationArgs),
    Verify(verify::VerifyArgs),
    /// Read a cache's transparency log: checkpoint, inclusion and consistency proofs.
    #[command(subcommand)]
    Log(log::LogCommand),
    Whoami(whoami::WhoamiArgs),
}

pub async fn run(cli: Cli) -> Result<()> {
    if let Some(file) = cli.token_file {
        crate::config::set_token_file(file);
    }
    match cli.command {
        Command::Login(args) => login::run(args),
        Command::Use(args) => use_cache::run(args).await,
        Command::Push(args) => push::run(args).await,
        Command::Queue(command) => queue::run(command).await,
        Command::WatchStore(args) => watch::watch_store(args).await,
        Command::WatchExec(args) => {
            let code = watch::watch_exec(args).await?;
            std::process::exit(code)
        }
        Command::Cache(command) => cache::run(command).await,
        Command::Publisher(command) => publisher::run(command).await,
        Command::Pin(args) => pin::run(args).await,
        Command::Provenance(args) => provenance::run(args).await,
        Command::Audit(args) => audit::run(args).await,
        Command::Keys(command) => keys::run(command).await,
        Command::Revoke(args) => revoke::run(args).await,
        Command::CheckStore(args) => check_store::run(args).await,
        Command::VerifyAttestation(args) => verify_attestation::run(args),
        Command::Verify(args) => verify::run(args).await,
        Command::Log(command) => log::run(command).await,
        Command::Whoami(args) => whoami::run(args).await,
    }
}
