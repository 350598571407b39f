//! The `evident` binary: `evident serve` runs the store (the embedded log behind the HTTP API);
//! every other subcommand is a client of a running server's HTTP API (`topics`, `append`,
//! `read`, `tail`, `groups`, `dlq`, `schemas`, `sql`). Errors are printed once, with their chain, and exit
//! non-zero: the client commands choose their exit code (1 refused, 2 usage, 3 unreachable;
//! see `cli`), and a usage error is JSON on stderr too when `--json` is on the command line.

mod cli;
mod http;
mod metrics;
mod registry;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A malformed Kafka request must not abort the server through a huge allocation; see
/// `evident_kafka::alloc_guard`.
#[global_allocator]
static ALLOCATOR: evident_kafka::alloc_guard::GuardedAlloc = evident_kafka::alloc_guard::GuardedAlloc;

/// evident: an event store for event sourcing and CQRS that speaks the Kafka protocol.
#[derive(Debug, Parser)]
#[command(name = "evident", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Parsed only so `evident --server URL topics list` works: clap propagates these global
    /// values into the client subcommand's own options, which `cli::run` reads.
    #[command(flatten)]
    _client_options: cli::GlobalClientOptions,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the store: the embedded log behind the HTTP API.
    Serve(Box<serve::ServeArgs>),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

fn main() -> ExitCode {
    let args = match Cli::try_parse() {
        Ok(args) => args,
        Err(e) => return usage_error(e),
    };
    let result = match args.command {
        Command::Serve(serve_args) => serve::run(*serve_args),
        Command::Client(command) => return cli::run(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("evident: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reports a command-line error: clap's own output (help and version are not errors), or with
/// `--json` anywhere on the command line one JSON document on stderr; exit code 2 either way.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let json = std::env::args().skip(1).take_while(|a| a != "--").any(|a| a == "--json");
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) || !json {
        e.exit();
    }
    let message = e.render().to_string();
    let message = message.trim().trim_start_matches("error: ");
    let document = serde_json::json!({ "error": { "code": "usage", "message": message } });
    eprintln!("{document}");
    ExitCode::from(cli::EXIT_USAGE)
}
