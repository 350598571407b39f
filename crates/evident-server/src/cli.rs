//! The client commands of the `evident` binary (`topics`, `append`, `read`, `tail`, `groups`,
//! `dlq`): each one is a thin, blocking client of a running server's HTTP API
//! (`docs/http-api.md`). They share two options, `--server URL` and `--json`, which may be given
//! before or after the subcommand.
//!
//! Output is a table or a line of text for people, or with `--json` JSON on stdout for scripts
//! (one document; one event a line for `tail`), while progress and notes go to stderr. A server
//! error exits with code 1 and the server's message and code; bad command-line input is clap's
//! usage error (exit code 2).

mod append;
mod client;
mod dlq;
mod groups;
mod output;
mod read;
mod tail;
mod topics;

use std::io;
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Where the client commands look for a server when neither `--server` nor `EVIDENT_SERVER` says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// The help text shared by the client commands about where their options may go.
const OPTIONS_NOTE: &str = "\
--server and --json may also come before the subcommand: `evident --json topics list`.
With --json, stdout holds only JSON: one document (the server's reply; `tail`: one event a line).
Exit codes: 0 success; 1 the server refused the request or could not be reached; 2 bad usage.";

/// The options every client command takes. Each client subcommand flattens this struct, and the
/// arguments are `global`, so they are accepted anywhere after the subcommand too.
#[derive(Debug, Clone, Args)]
pub struct ClientOptions {
    /// The evident server's HTTP address (`http://` is assumed when no scheme is given).
    #[arg(
        long,
        global = true,
        env = "EVIDENT_SERVER",
        default_value = DEFAULT_SERVER,
        value_name = "URL",
        help_heading = "Client options"
    )]
    pub server: String,
    /// Print JSON for scripts instead of tables: the server's reply as one document (events one
    /// per line for `tail`).
    #[arg(long, global = true, help_heading = "Client options")]
    pub json: bool,
}

/// The same options as [`ClientOptions`], for the top-level command, so that
/// `evident --server URL topics list` works as well as `evident topics list --server URL`.
///
/// They are hidden there (the client subcommands document them) and carry no default: clap
/// propagates a value given before the subcommand into the subcommand's own [`ClientOptions`],
/// where a value given on the command line wins over one from the environment or the default.
#[derive(Debug, Clone, Args)]
pub struct GlobalClientOptions {
    /// The evident server's HTTP address (see the client commands).
    #[arg(long, global = true, hide = true, value_name = "URL")]
    pub server: Option<String>,
    /// Print the server's JSON reply (see the client commands).
    #[arg(long, global = true, hide = true)]
    pub json: bool,
}

/// The client subcommands: every one talks to a running `evident serve` over HTTP.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// List, create, describe and delete topics.
    #[command(after_help = OPTIONS_NOTE)]
    Topics(topics::TopicsArgs),
    /// Append events to an entity stream (topic + key), optionally only at an expected version.
    #[command(after_help = OPTIONS_NOTE)]
    Append(Box<append::AppendArgs>),
    /// Read a stream, a partition or everything, paging through to the end (or --limit).
    #[command(after_help = OPTIONS_NOTE)]
    Read(Box<read::ReadArgs>),
    /// Follow events live (Server-Sent Events), reconnecting where it left off if dropped.
    #[command(after_help = OPTIONS_NOTE)]
    Tail(Box<tail::TailArgs>),
    /// Consumer groups: list, describe, delete, fetch, commit and reset offsets.
    #[command(after_help = OPTIONS_NOTE)]
    Groups(groups::GroupsArgs),
    /// Dead-letter queues of projections: list parked events, retry or skip them.
    #[command(after_help = OPTIONS_NOTE)]
    Dlq(dlq::DlqArgs),
}

/// Runs a client command against the server its options name and returns the process's exit code.
///
/// A closed stdout (`evident read … | head`) ends the command quietly with success, as other
/// Unix tools do, instead of reporting a broken pipe.
pub fn run(command: ClientCommand) -> anyhow::Result<ExitCode> {
    let result = match command {
        ClientCommand::Topics(args) => topics::run(args),
        ClientCommand::Append(args) => append::run(*args),
        ClientCommand::Read(args) => read::run(*args),
        ClientCommand::Tail(args) => tail::run(*args),
        ClientCommand::Groups(args) => groups::run(args),
        ClientCommand::Dlq(args) => dlq::run(args),
    };
    match result {
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}

/// Whether an error comes from writing to a pipe whose reader has gone.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser};

    use super::*;

    /// The top-level command as `main.rs` builds it, to check how the options travel.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ClientCommand,
        #[command(flatten)]
        _client_options: GlobalClientOptions,
    }

    fn options(argv: &[&str]) -> ClientOptions {
        let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        match cli.command {
            ClientCommand::Topics(args) => args.client,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn options_before_or_after_the_subcommand() {
        let default = options(&["evident", "topics", "list"]);
        assert_eq!((default.server.as_str(), default.json), (DEFAULT_SERVER, false));
        for argv in [
            &["evident", "--server", "h:1", "--json", "topics", "list"][..],
            &["evident", "topics", "--server", "h:1", "list", "--json"],
            &["evident", "topics", "list", "--json", "--server=h:1"],
            &["evident", "--json", "topics", "list", "--server", "h:1"],
        ] {
            let options = options(argv);
            assert_eq!((options.server.as_str(), options.json), ("h:1", true), "{argv:?}");
        }
    }
}
