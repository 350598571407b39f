//! The client commands of the `evident` binary (`topics`, `append`, `read`, `tail`, `groups`,
//! `dlq`, `sql`): each one is a thin, blocking client of a running server's HTTP API
//! (`docs/http-api.md`); `schemas` is a client of a schema registry's Confluent REST API
//! (`docs/registry-cli.md`), with `--registry URL` in place of `--server`. They share two options, `--server URL` and `--json`, which may be given
//! before or after the subcommand.
//!
//! Output is a table or a line of text for people, or with `--json` JSON on stdout for scripts
//! (one document; one event a line for `tail`), while progress and notes go to stderr.
//!
//! Failures are told apart by exit code, so scripts can act on them: 1 the server refused the
//! request (its message and stable code on stderr), 2 bad usage (clap's errors, and arguments
//! that cannot make a request), 3 the server could not be reached or did not answer (nothing
//! was refused; retrying may help). With `--json` the error goes to stderr as one JSON document,
//! the server's own `{"error": {"code", "message", ...}}` (with `current_version` on a
//! conflict) plus its HTTP `status`, or the same shape with the code `usage`, `unreachable` or
//! `client` for failures on this side.

mod append;
mod client;
mod dlq;
mod groups;
mod output;
mod read;
mod schemas;
mod sql;
mod sse;
mod tail;
mod topics;

use std::io;
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Where the client commands look for a server when neither `--server` nor `EVIDENT_SERVER` says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// The help text shared by the client commands about where their options may go.
const OPTIONS_NOTE: &str = r#"--server and --json may also come before the subcommand: `evident --json topics list`.
With --json, stdout holds only JSON: one document (the server's reply; `tail`: one event a line).
Exit codes: 0 success; 1 the server refused the request; 2 bad usage; 3 the server could not
be reached or did not answer. With --json, errors are one JSON document on stderr:
{"error": {"code", "message", "status", ...}} (the server's code and fields, such as
current_version, or usage / unreachable / client)."#;

/// Exit code: the server refused the request.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code: bad usage.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the server could not be reached or did not answer.
pub const EXIT_UNREACHABLE: u8 = 3;

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
    /// Schemas in a schema registry (Confluent's REST API): list, get, register, check
    /// compatibility, delete, and compatibility levels.
    #[command(after_help = schemas::OPTIONS_NOTE)]
    Schemas(schemas::SchemasArgs),
    /// Run SQL over the views: statements, pull queries as tables, push queries (EMIT CHANGES)
    /// as they change; a REPL, or -e STATEMENT, or -f FILE.
    #[command(after_help = OPTIONS_NOTE)]
    Sql(Box<sql::SqlArgs>),
}

impl ClientCommand {
    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        match self {
            ClientCommand::Topics(args) => args.client.json,
            ClientCommand::Append(args) => args.client.json,
            ClientCommand::Read(args) => args.client.json,
            ClientCommand::Tail(args) => args.client.json,
            ClientCommand::Groups(args) => args.client.json,
            ClientCommand::Dlq(args) => args.client.json,
            ClientCommand::Schemas(args) => args.registry.json,
            ClientCommand::Sql(args) => args.client.json,
        }
    }
}

/// Runs a client command against the server its options name, reports a failure on stderr
/// (JSON under `--json`) and returns the process's exit code.
///
/// A closed stdout (`evident read … | head`) ends the command quietly with success, as other
/// Unix tools do, instead of reporting a broken pipe.
pub fn run(command: ClientCommand) -> ExitCode {
    let json = command.json();
    let result = match command {
        ClientCommand::Topics(args) => topics::run(args),
        ClientCommand::Append(args) => append::run(*args),
        ClientCommand::Read(args) => read::run(*args),
        ClientCommand::Tail(args) => tail::run(*args),
        ClientCommand::Groups(args) => groups::run(args),
        ClientCommand::Dlq(args) => dlq::run(args),
        ClientCommand::Schemas(args) => schemas::run(args),
        // `sql` runs many statements, reporting each failure itself (with `print_failure`).
        ClientCommand::Sql(args) => return sql::run(*args),
    };
    match result {
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(print_failure(&e, json)),
        Ok(()) => ExitCode::SUCCESS,
    }
}

/// Reports a failure on stderr (its chain for people, one JSON document under `--json`) and
/// returns its exit code.
fn print_failure(error: &anyhow::Error, json: bool) -> u8 {
    let (code, document) = report(error);
    if json {
        eprintln!("{document}");
    } else {
        eprintln!("evident: {error:#}");
    }
    code
}

/// The exit code of a failure and its JSON document for `--json`.
fn report(error: &anyhow::Error) -> (u8, serde_json::Value) {
    let message = format!("{error:#}");
    let local = |code: &str| serde_json::json!({ "error": { "code": code, "message": message } });
    for cause in error.chain() {
        if let Some(refusal) = cause.downcast_ref::<client::ApiError>() {
            let mut document = match (&refusal.document, &refusal.body) {
                (Some(document), _) => document.clone(),
                (None, Some(body)) => serde_json::to_value(body).unwrap_or_else(|_| local("server")),
                (None, None) => local("server"),
            };
            document["error"]["status"] = serde_json::Value::from(refusal.status.as_u16());
            return (EXIT_REFUSED, document);
        }
        if let Some(refusal) = cause.downcast_ref::<schemas::RegistryError>() {
            return (EXIT_REFUSED, refusal.document());
        }
        if cause.downcast_ref::<schemas::Incompatible>().is_some() {
            return (EXIT_REFUSED, local("incompatible"));
        }
        if cause.downcast_ref::<client::Unreachable>().is_some() {
            return (EXIT_UNREACHABLE, local("unreachable"));
        }
        if cause.downcast_ref::<client::Usage>().is_some() {
            return (EXIT_USAGE, local("usage"));
        }
    }
    (EXIT_REFUSED, local("client"))
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

    /// Every code of the API's table reaches `--json`'s error document as the server sent it,
    /// with its HTTP status and the fields its code carries, and exits as a refusal.
    #[test]
    fn every_error_code_reaches_the_json_error_document() {
        use evident_api::{ErrorBody, ErrorCode};
        for &code in ErrorCode::ALL {
            let mut body = ErrorBody::new(code.as_str(), "refused");
            match code {
                ErrorCode::WrongExpectedVersion => body.error.current_version = Some(Some(4)),
                ErrorCode::NotFirstEntry => body.error.first_sequence = Some(7),
                _ => {}
            }
            let status = reqwest::StatusCode::from_u16(code.status()).expect("a status");
            let refusal = client::ApiError::from_body(status, &serde_json::to_string(&body).expect("json"));
            assert_eq!(refusal.code, Some(code));
            assert_eq!(refusal.to_string(), format!("refused ({}, HTTP {})", code.as_str(), code.status()));
            let (exit, document) = report(&anyhow::Error::new(refusal).context("appending"));
            assert_eq!(exit, EXIT_REFUSED, "{code:?}");
            let mut expected = serde_json::to_value(&body).expect("json");
            expected["error"]["status"] = code.status().into();
            assert_eq!(document, expected, "{code:?}");
        }
        // A code this build does not know still reaches the document unchanged.
        let newer = r#"{"error":{"code":"from_the_future","message":"later","line":3,"column":7}}"#;
        let refusal = client::ApiError::from_body(reqwest::StatusCode::CONFLICT, newer);
        assert_eq!(refusal.code, None);
        let (exit, document) = report(&anyhow::Error::new(refusal));
        assert_eq!(
            (exit, &document["error"]["code"], &document["error"]["status"]),
            (EXIT_REFUSED, &"from_the_future".into(), &409.into())
        );
        // Fields this build does not know (a SQL error's position) reach it too.
        assert_eq!((&document["error"]["line"], &document["error"]["column"]), (&3.into(), &7.into()));
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
