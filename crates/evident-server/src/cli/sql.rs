//! `evident sql`: SQL over the server's views through `POST /v1/sql`. Statements come from `-e`,
//! from `-f FILE` (`-` for stdin), from piped stdin, or from a REPL on a terminal; each one is
//! sent on its own. A query's rows print as a table (or the server's JSON under `--json`), a
//! statement prints its message, and a push query (`… EMIT CHANGES`, answered as Server-Sent
//! Events) prints each change as it arrives until `--limit`, the server closing, or Ctrl-C.
//!
//! Statements are split at `;` on this side by [`Splitter`], a small lexer that knows the SQL
//! quotes (`'…'`, `"…"`, `` `…` ``, doubled to escape) and comments (`--`, `/* */`), so a `;`
//! inside a string or a comment does not end a statement; the server parses each statement.
//!
//! In the REPL, Ctrl-C ends a running push query and returns to the prompt (the query runs on
//! its own thread, which the prompt stops waiting for); anywhere else Ctrl-C ends the program,
//! as it does without a handler.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::Args;
use evident_api::sql::SqlRequest;
use reqwest::blocking::Response;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use super::client::{self, Client, Unreachable};
use super::output;
use super::sse::{follow, Ended, SseParser};
use super::{is_broken_pipe, print_failure, ClientOptions};

/// The REPL's prompt for a new statement.
const PROMPT: &str = "evident> ";

/// The REPL's prompt while a statement goes on over several lines (until a `;` ends it).
const CONTINUATION_PROMPT: &str = "      -> ";

/// What the REPL accepts to leave (alone on a line, with or without `;`, in any case).
const QUIT_WORDS: [&str; 3] = ["quit", "exit", "\\q"];

/// `evident sql`.
#[derive(Debug, Args)]
#[command(after_long_help = r#"Where statements come from:
  evident sql -e "SHOW TABLES"            run statements given on the command line (-e may be repeated;
                                          one may hold several, separated by `;`)
  evident sql -f views.sql                run the statements of a file (`-f -`: stdin)
  evident sql < views.sql                 stdin that is not a terminal is read the same way
  evident sql                             on a terminal: a REPL (prompt `evident> `; a statement
                                          ends with `;`; `quit`, `exit` or Ctrl-D leaves)

Statements are separated by `;` (not inside quotes or `--` / `/* */` comments). A query prints a
table of its rows and a row count; CREATE / DROP print the server's message. A push query
(`SELECT … EMIT CHANGES`) prints a header, then one line per change (`upsert` or `delete` and the
row) as the view changes, until --limit changes, the server ends it, or Ctrl-C. Cells show SQL
NULL as `null`. With --json, stdout holds one JSON object per line: the server's reply to each
statement, and for a push query its header `{"columns": [...]}`, then each change
`{"op": "upsert"|"delete", "row": [...]}`.

From -e, -f or piped stdin, the first failing statement ends the run with its exit code (1 the
server refused it, 3 the server could not be reached), unless --continue-on-error; the REPL
reports the error and goes on."#)]
pub struct SqlArgs {
    #[command(flatten)]
    pub(super) client: ClientOptions,
    /// Run STATEMENT (repeatable; one may hold several statements separated by `;`), then exit.
    #[arg(long = "execute", short = 'e', value_name = "STATEMENT", conflicts_with = "file")]
    execute: Vec<String>,
    /// Run the statements of FILE (separated by `;`; `-` reads stdin), then exit.
    #[arg(long, short = 'f', value_name = "FILE")]
    file: Option<PathBuf>,
    /// With -e, -f or piped stdin: go on after a failing statement (the exit code still tells of
    /// the first failure).
    #[arg(long)]
    continue_on_error: bool,
    /// Push queries (EMIT CHANGES): stop after N changes.
    #[arg(long, short = 'n', value_name = "N")]
    limit: Option<u64>,
    /// Read your writes: a query first waits until the views have applied the commit with this
    /// store-wide sequence (an append's `sequence`), as long as the server allows.
    #[arg(long, value_name = "N")]
    min_sequence: Option<u64>,
    /// How long, in milliseconds, the server may wait for --min-sequence before refusing.
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
}

/// Runs `evident sql` and returns its exit code: it reports each failure itself, since a REPL or
/// `--continue-on-error` goes on after one.
pub fn run(args: SqlArgs) -> ExitCode {
    let json = args.client.json;
    let session = match Session::new(&args) {
        Ok(session) => session,
        Err(e) => return ExitCode::from(print_failure(&e, json)),
    };
    let stop_on_error = !args.continue_on_error;
    let outcome = if !args.execute.is_empty() {
        let mut statements = Vec::new();
        for text in &args.execute {
            let mut splitter = Splitter::new();
            statements.extend(splitter.push(text));
            statements.extend(splitter.finish());
        }
        let numbered = statements.len() > 1;
        run_statements(&session, statements.into_iter().map(Ok), stop_on_error, |_, index| {
            numbered.then(|| format!("statement {index}"))
        })
    } else {
        match args.file.as_deref() {
            Some(path) if path.as_os_str() != "-" => match File::open(path) {
                Ok(file) => {
                    let name = path.display().to_string();
                    run_script(&session, BufReader::new(file), &name, stop_on_error)
                }
                Err(e) => {
                    let error = anyhow!(client::Usage(format!("cannot read {}: {e}", path.display())));
                    Outcome::Failed(print_failure(&error, json))
                }
            },
            Some(_) => run_script(&session, io::stdin().lock(), "<stdin>", stop_on_error),
            None if io::stdin().is_terminal() => repl(&session),
            None => run_script(&session, io::stdin().lock(), "<stdin>", stop_on_error),
        }
    };
    match outcome {
        Outcome::Done => ExitCode::SUCCESS,
        Outcome::Failed(code) => ExitCode::from(code),
    }
}

/// How a run of statements ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Every statement succeeded (or stdout closed, which ends the run quietly).
    Done,
    /// A statement failed: the exit code of the first failure.
    Failed(u8),
}

/// Runs the statements of a script read line by line, each as soon as its `;` arrives (so a
/// pipe can feed statements one by one), the last one even without `;`. A failure names the
/// script and the line where the statement starts.
fn run_script(session: &Session, mut input: impl BufRead, name: &str, stop_on_error: bool) -> Outcome {
    let mut splitter = Splitter::new();
    let mut line = String::new();
    let mut failed = None;
    let lines = std::iter::from_fn(|| {
        if failed.is_some() {
            return None;
        }
        loop {
            line.clear();
            match input.read_line(&mut line) {
                Ok(0) => return splitter.finish().map(|s| Ok(vec![s])),
                Ok(_) => {
                    let statements = splitter.push(&line);
                    if !statements.is_empty() {
                        return Some(Ok(statements));
                    }
                }
                Err(e) => {
                    failed = Some(());
                    return Some(Err(anyhow!(client::Usage(format!("cannot read {name}: {e}")))));
                }
            }
        }
    });
    let statements = lines.flat_map(|batch| match batch {
        Ok(statements) => statements.into_iter().map(Ok).collect::<Vec<_>>(),
        Err(e) => vec![Err(e)],
    });
    run_statements(session, statements, stop_on_error, |statement, _| Some(format!("{name} line {}", statement.line)))
}

/// Runs statements in order, reporting each failure (with the context `label` gives) and, when
/// `stop_on_error`, stopping at the first; the outcome carries the first failure's exit code.
fn run_statements(
    session: &Session,
    statements: impl Iterator<Item = anyhow::Result<Statement>>,
    stop_on_error: bool,
    label: impl Fn(&Statement, usize) -> Option<String>,
) -> Outcome {
    let mut outcome = Outcome::Done;
    for (index, statement) in statements.enumerate() {
        let result = statement.and_then(|statement| {
            session.execute(&statement, None).map_err(|e| match label(&statement, index + 1) {
                Some(label) => e.context(label),
                None => e,
            })
        });
        let Err(e) = result else { continue };
        if is_broken_pipe(&e) {
            return outcome;
        }
        let code = print_failure(&e, session.json);
        if outcome == Outcome::Done {
            outcome = Outcome::Failed(code);
        }
        if stop_on_error {
            break;
        }
    }
    outcome
}

/// The REPL: prompts on stdout, reads a line at a time, runs each statement its `;` ends and
/// reports a failure without leaving; `quit`, `exit` or end of input leaves.
fn repl(session: &Session) -> Outcome {
    eprintln!(
        "evident sql on {}: end each statement with `;`; `quit`, `exit` or Ctrl-D leaves.",
        session.client.base().as_str().trim_end_matches('/')
    );
    let interrupts = Interrupts::install();
    let mut input = io::stdin().lock();
    let mut splitter = Splitter::new();
    let mut line = String::new();
    loop {
        let prompt = if splitter.is_between_statements() { PROMPT } else { CONTINUATION_PROMPT };
        if prompt_user(prompt).is_err() {
            return Outcome::Done;
        }
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) => {
                // End of input (Ctrl-D): leave on a fresh line.
                println!();
                return Outcome::Done;
            }
            Ok(_) => {}
            Err(e) => {
                let error = anyhow!(client::Usage(format!("cannot read the terminal: {e}")));
                return Outcome::Failed(print_failure(&error, session.json));
            }
        }
        if splitter.is_between_statements() && is_quit(&line) {
            return Outcome::Done;
        }
        for statement in splitter.push(&line) {
            let result = match &interrupts {
                Some(interrupts) if statement.push => interrupts.run_push_query(session, &statement),
                _ => session.execute(&statement, None),
            };
            if let Err(e) = result {
                if is_broken_pipe(&e) {
                    return Outcome::Done;
                }
                print_failure(&e, session.json);
            }
        }
    }
}

/// Prints a prompt (no newline) and flushes it.
fn prompt_user(prompt: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(prompt.as_bytes())?;
    out.flush()
}

/// Whether a REPL line asks to leave.
fn is_quit(line: &str) -> bool {
    let word = line.trim().trim_end_matches(';').trim_end();
    QUIT_WORDS.iter().any(|quit| word.eq_ignore_ascii_case(quit))
}

/// Ctrl-C in the REPL: a push query ends and the prompt comes back; at the prompt or during
/// another statement, the program ends with the status of an interrupted one (130).
struct Interrupts {
    /// Whether a push query is running, so that Ctrl-C cancels it instead of ending the REPL.
    pushing: Arc<AtomicBool>,
    /// Set by the signal thread when Ctrl-C arrived during a push query.
    interrupted: Arc<AtomicBool>,
}

/// How often the REPL looks for a Ctrl-C while a push query runs.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);

impl Interrupts {
    /// Takes over SIGINT with a thread of its own (a one-thread tokio runtime, already a
    /// dependency); `None` where that is not possible, leaving Ctrl-C to end the program.
    #[cfg(unix)]
    fn install() -> Option<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        // Registered here, before the prompt, so no Ctrl-C falls between the two.
        let mut sigint = {
            let _context = runtime.enter();
            signal(SignalKind::interrupt()).ok()?
        };
        let pushing = Arc::new(AtomicBool::new(false));
        let interrupted = Arc::new(AtomicBool::new(false));
        let (on_push, flag) = (pushing.clone(), interrupted.clone());
        thread::Builder::new()
            .name("sql-ctrl-c".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while sigint.recv().await.is_some() {
                        if on_push.load(Ordering::SeqCst) {
                            flag.store(true, Ordering::SeqCst);
                        } else {
                            eprintln!();
                            std::process::exit(130);
                        }
                    }
                });
            })
            .ok()?;
        Some(Interrupts { pushing, interrupted })
    }

    #[cfg(not(unix))]
    fn install() -> Option<Self> {
        None
    }

    /// Runs a push query on its own thread until it ends or Ctrl-C: then the query is told to
    /// stop at its next message (printing nothing more) and the prompt comes back at once.
    fn run_push_query(&self, session: &Session, statement: &Statement) -> anyhow::Result<()> {
        let cancel = Arc::new(AtomicBool::new(false));
        self.interrupted.store(false, Ordering::SeqCst);
        self.pushing.store(true, Ordering::SeqCst);
        let (done, result) = mpsc::channel();
        let (query_session, query, query_cancel) = (session.clone(), statement.clone(), cancel.clone());
        let spawned = thread::Builder::new().name("sql-push-query".into()).spawn(move || {
            let _ = done.send(query_session.execute(&query, Some(&query_cancel)));
        });
        let outcome = match spawned {
            Err(e) => Err(anyhow!("could not start the push query: {e}")),
            Ok(_) => loop {
                match result.recv_timeout(INTERRUPT_POLL) {
                    Ok(outcome) => break outcome,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if self.interrupted.swap(false, Ordering::SeqCst) {
                            cancel.store(true, Ordering::SeqCst);
                            eprintln!("\nevident: push query cancelled");
                            break Ok(());
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        break Err(anyhow!("the push query ended without an answer"));
                    }
                }
            },
        };
        self.pushing.store(false, Ordering::SeqCst);
        outcome
    }
}

/// The server and the options every statement is sent with.
#[derive(Clone)]
struct Session {
    /// For statements and pull queries: requests bounded in time.
    client: Client,
    /// For push queries, which last as long as the user wants: no overall timeout.
    streaming: Client,
    json: bool,
    limit: Option<u64>,
    min_sequence: Option<u64>,
    timeout_ms: Option<u64>,
}

impl Session {
    fn new(args: &SqlArgs) -> anyhow::Result<Self> {
        Ok(Session {
            client: Client::new(&args.client.server)?,
            streaming: Client::for_streaming(&args.client.server)?,
            json: args.client.json,
            limit: args.limit,
            min_sequence: args.min_sequence,
            timeout_ms: args.timeout_ms,
        })
    }

    /// Sends one statement and prints its answer; a push query stops at its next message once
    /// `cancel` is set.
    fn execute(&self, statement: &Statement, cancel: Option<&AtomicBool>) -> anyhow::Result<()> {
        let client = if statement.push { &self.streaming } else { &self.client };
        let url = client.url(&["v1", "sql"], &[])?;
        let body =
            SqlRequest { sql: statement.text.clone(), min_sequence: self.min_sequence, timeout_ms: self.timeout_ms };
        let response = client.post_for_response(url.clone(), &body, "application/json, text/event-stream")?;
        // The reply's type decides, not the guess that chose the client: the server knows which
        // statements are push queries.
        if is_event_stream(&response) {
            return self.follow_push_query(response, cancel);
        }
        let reply = client::json_body(response, &url)?;
        if self.json {
            return Ok(output::print_json_line(&reply)?);
        }
        Ok(output::print_text(&reply_text(&reply))?)
    }

    /// Prints a push query's header and changes as they arrive, until `--limit` changes or the
    /// end of the stream.
    fn follow_push_query(&self, mut response: Response, cancel: Option<&AtomicBool>) -> anyhow::Result<()> {
        let limit = self.limit.unwrap_or(u64::MAX);
        let mut changes = 0u64;
        let mut parser = SseParser::new();
        let ended = follow(&mut response, &mut parser, &mut |message| {
            if cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
                return Ok(false);
            }
            let value: Value = serde_json::from_str(&message.data).with_context(|| {
                format!("an event-stream message is not JSON: {}", output::truncate(&message.data, 200))
            })?;
            match message.event.as_str() {
                "header" => {
                    if self.json {
                        output::print_json_line(&value)?;
                    } else {
                        output::print_text(&header_line(&value))?;
                    }
                }
                "error" => {
                    let error = value.get("error").unwrap_or(&value);
                    let text =
                        error.get("message").and_then(Value::as_str).map_or_else(|| error.to_string(), str::to_owned);
                    let code = error.get("code").and_then(Value::as_str).unwrap_or("error");
                    anyhow::bail!("the server ended the push query: {text} ({code})");
                }
                "message" => {
                    if self.json {
                        output::print_json_line(&value)?;
                    } else {
                        output::print_text(&change_line(&value))?;
                    }
                    changes += 1;
                }
                // Other event types are not changes (a later server's notices): skip them.
                _ => {}
            }
            Ok(changes < limit)
        })?;
        match ended {
            Ended::Stopped => Ok(()),
            Ended::Closed => {
                eprintln!("evident: the server ended the push query after {changes} changes");
                Ok(())
            }
            Ended::Failed(e) => {
                Err(anyhow!(Unreachable(format!("lost the push query's connection after {changes} changes: {e}"))))
            }
        }
    }
}

/// Whether a reply is a Server-Sent Events stream (a push query's).
fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

/// A reply as text for people: a query's rows as a table with a row count, a statement's
/// message, or anything else as compact JSON.
fn reply_text(reply: &Value) -> String {
    if let Some(columns) = reply.get("columns").and_then(Value::as_array) {
        let names: Vec<String> = columns.iter().map(column_name).collect();
        let mut table = output::table(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let rows = reply.get("rows").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        for row in rows {
            let cells = row.as_array().map_or(&[][..], Vec::as_slice);
            table.add_row(cells.iter().map(sql_cell).collect::<Vec<_>>());
        }
        let count = if rows.len() == 1 { "(1 row)".to_owned() } else { format!("({} rows)", rows.len()) };
        return format!("{}\n{count}", output::render_table(&table));
    }
    for field in ["message", "statement", "status"] {
        if let Some(text) = reply.get(field).and_then(Value::as_str).filter(|t| !t.is_empty()) {
            return text.to_owned();
        }
    }
    reply.to_string()
}

/// A column's name, from `{"name": …, "type": …}` (or a bare name).
fn column_name(column: &Value) -> String {
    match column {
        Value::String(name) => name.clone(),
        _ => column.get("name").map_or_else(|| column.to_string(), sql_cell),
    }
}

/// A SQL value as text: strings without quotes, NULL as `null`, anything else as compact JSON.
fn sql_cell(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The width of the `op` column of a push query's lines (`upsert`, `delete`).
const OP_WIDTH: usize = 6;

/// A push query's header line: `op` and the column names, two spaces apart.
fn header_line(header: &Value) -> String {
    let columns = header.get("columns").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let mut parts = vec![format!("{:OP_WIDTH$}", "op")];
    parts.extend(columns.iter().map(column_name));
    parts.join("  ")
}

/// A change as one line: `upsert  order-7  24`.
fn change_line(change: &Value) -> String {
    let op = change.get("op").and_then(Value::as_str).unwrap_or("?");
    let mut parts = vec![format!("{op:OP_WIDTH$}")];
    match change.get("row") {
        Some(Value::Array(row)) => parts.extend(row.iter().map(sql_cell)),
        Some(other) => parts.push(sql_cell(other)),
        None => {}
    }
    parts.join("  ")
}

/// One statement cut from the input, without its `;`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    /// The statement's text, trimmed (comments inside it kept: the server skips them).
    text: String,
    /// The line (1-based) of the input where the statement starts.
    line: usize,
    /// Whether it reads as a push query (`EMIT CHANGES` outside strings and comments), which is
    /// sent without an overall timeout.
    push: bool,
}

/// Where the lexer is within the SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lexical {
    /// Plain SQL, where `;` ends a statement.
    Code,
    /// Inside a quoted string or identifier opened by this quote; the same quote closes it (a
    /// doubled quote escapes itself: it closes and at once reopens).
    Quoted(char),
    /// After `--`, up to the end of the line.
    LineComment,
    /// Inside `/* … */`.
    BlockComment,
}

/// Splits SQL text into statements at `;`, fed a piece at a time (a line of the REPL, a whole
/// `-e` argument): a statement may span pieces, and a piece may hold several statements.
#[derive(Debug)]
struct Splitter {
    /// The text of the statement being read.
    text: String,
    /// Its code outside strings and comments (those become a space), to recognize a push query.
    code: String,
    state: Lexical,
    /// In code, a `-` or `/` that may start a comment, kept until the next character tells; in
    /// a block comment, a `*` that may end it.
    pending: Option<char>,
    /// Whether the statement has anything but white space and comments.
    has_content: bool,
    /// The line (1-based) the next character is on.
    line: usize,
    /// The line of the statement's first content, and of a pending `-` or `/`.
    start_line: usize,
    pending_line: usize,
}

impl Splitter {
    fn new() -> Self {
        Splitter {
            text: String::new(),
            code: String::new(),
            state: Lexical::Code,
            pending: None,
            has_content: false,
            line: 1,
            start_line: 1,
            pending_line: 1,
        }
    }

    /// Whether no statement is under way: only white space and finished comments since the last
    /// `;` (the REPL's main prompt, where `quit` is understood).
    fn is_between_statements(&self) -> bool {
        !self.has_content && self.pending.is_none() && matches!(self.state, Lexical::Code | Lexical::LineComment)
    }

    /// Feeds text; returns the statements it completes.
    fn push(&mut self, input: &str) -> Vec<Statement> {
        let mut statements = Vec::new();
        for c in input.chars() {
            if let Some(statement) = self.step(c) {
                statements.push(statement);
            }
            if c == '\n' {
                self.line += 1;
            }
        }
        statements
    }

    /// The end of the input: the last statement, even without its `;` (an unclosed string or
    /// comment included, for the server to report).
    fn finish(&mut self) -> Option<Statement> {
        self.resolve_pending();
        let statement = self.take();
        self.state = Lexical::Code;
        statement
    }

    /// Handles one character; returns the statement a `;` ends.
    fn step(&mut self, c: char) -> Option<Statement> {
        match self.state {
            Lexical::Code => {
                match (self.pending.take(), c) {
                    (Some('-'), '-') => {
                        self.state = Lexical::LineComment;
                        self.text.push(c);
                        self.code.push(' ');
                        return None;
                    }
                    (Some('/'), '*') => {
                        self.state = Lexical::BlockComment;
                        self.text.push(c);
                        self.code.push(' ');
                        return None;
                    }
                    (Some(p), _) => {
                        self.pending = Some(p);
                        self.resolve_pending();
                    }
                    (None, _) => {}
                }
                match c {
                    ';' => return self.take(),
                    '-' | '/' => {
                        self.pending = Some(c);
                        self.pending_line = self.line;
                    }
                    '\'' | '"' | '`' => {
                        self.content();
                        self.state = Lexical::Quoted(c);
                        self.code.push(' ');
                    }
                    c if c.is_whitespace() => self.code.push(c),
                    _ => {
                        self.content();
                        self.code.push(c);
                    }
                }
            }
            Lexical::Quoted(quote) => {
                if c == quote {
                    self.state = Lexical::Code;
                }
            }
            Lexical::LineComment => {
                if c == '\n' {
                    self.state = Lexical::Code;
                    self.code.push(c);
                }
            }
            Lexical::BlockComment => {
                if self.pending.take() == Some('*') && c == '/' {
                    self.state = Lexical::Code;
                } else if c == '*' {
                    self.pending = Some('*');
                }
            }
        }
        self.text.push(c);
        None
    }

    /// A pending `-` or `/` turned out not to start a comment: it is code.
    fn resolve_pending(&mut self) {
        if self.state != Lexical::Code {
            return;
        }
        if let Some(p) = self.pending.take() {
            if !self.has_content {
                self.has_content = true;
                self.start_line = self.pending_line;
            }
            self.code.push(p);
        }
    }

    /// Marks the statement as having content, starting on this line if it is the first.
    fn content(&mut self) {
        if !self.has_content {
            self.has_content = true;
            self.start_line = self.line;
        }
    }

    /// Ends the statement read so far: `None` when it held nothing but white space and comments.
    fn take(&mut self) -> Option<Statement> {
        let text = std::mem::take(&mut self.text);
        let code = std::mem::take(&mut self.code);
        self.pending = None;
        if !std::mem::take(&mut self.has_content) {
            return None;
        }
        let words: Vec<String> = code.split_whitespace().map(str::to_ascii_uppercase).collect();
        let push = words.windows(2).any(|pair| pair[0] == "EMIT" && pair[1] == "CHANGES");
        Some(Statement { text: text.trim().to_owned(), line: self.start_line, push })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::*;

    /// Splits `input` as a whole (as `-e` and `-f` do): the statements' texts.
    fn split(input: &str) -> Vec<String> {
        let mut splitter = Splitter::new();
        let mut statements = splitter.push(input);
        statements.extend(splitter.finish());
        statements.into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn statements_end_at_semicolons() {
        assert_eq!(split("SHOW TABLES; SELECT 1;\nSELECT 2"), ["SHOW TABLES", "SELECT 1", "SELECT 2"]);
        assert_eq!(split("  ;; \n ; "), Vec::<String>::new());
        assert_eq!(split(""), Vec::<String>::new());
        // The seed's statement, hyphenated topic and all, is one statement.
        let seed = "CREATE TABLE order_summary AS SELECT orderId, SUM(item_price) AS total FROM order-events \
                    GROUP BY orderId;";
        assert_eq!(split(seed), [seed.trim_end_matches(';')]);
    }

    #[test]
    fn semicolons_inside_quotes_do_not_split() {
        assert_eq!(
            split("SELECT * FROM t WHERE a = 'x;y'; SELECT \"we;ird\" FROM `t;2`"),
            ["SELECT * FROM t WHERE a = 'x;y'", "SELECT \"we;ird\" FROM `t;2`"]
        );
        // A doubled quote escapes itself; the other quotes and comment marks mean nothing inside.
        assert_eq!(
            split("SELECT 'it''s; -- not a comment /*' ; SELECT \"a\"\"b;\""),
            ["SELECT 'it''s; -- not a comment /*'", "SELECT \"a\"\"b;\""]
        );
        // An unclosed string runs to the end, for the server to report.
        assert_eq!(split("SELECT 'open; SELECT 2;"), ["SELECT 'open; SELECT 2;"]);
    }

    #[test]
    fn comments() {
        assert_eq!(
            split("-- a comment; not a statement\nSELECT 1; -- trailing; note\n/* block; */ SELECT /* ; */ 2;"),
            ["-- a comment; not a statement\nSELECT 1", "-- trailing; note\n/* block; */ SELECT /* ; */ 2"]
        );
        // Statements of comments only are dropped.
        assert_eq!(split("-- only a comment;\n/* and; another */;"), Vec::<String>::new());
        // `-` and `/` alone are code: arithmetic, not comments.
        assert_eq!(split("SELECT a - 1, b / 2 FROM t;-"), ["SELECT a - 1, b / 2 FROM t", "-"]);
        assert_eq!(split("SELECT 1 -- comment at the end"), ["SELECT 1 -- comment at the end"]);
        // `/*/` does not close the comment it opens.
        assert_eq!(split("/*/ ; */ SELECT 3"), ["/*/ ; */ SELECT 3"]);
    }

    #[test]
    fn statements_span_lines_and_pieces() {
        let mut splitter = Splitter::new();
        assert!(splitter.is_between_statements());
        assert_eq!(splitter.push("SELECT orderId,\n"), []);
        assert!(!splitter.is_between_statements());
        assert_eq!(splitter.push("  'a;\n"), []);
        assert_eq!(splitter.push("b' FROM t -"), []);
        let done = splitter.push("- comment;\n; SELECT 2; SELECT\n");
        assert_eq!(done.len(), 2, "{done:?}");
        assert_eq!(done[0].text, "SELECT orderId,\n  'a;\nb' FROM t -- comment;");
        assert_eq!((done[0].line, done[1].line, done[1].text.as_str()), (1, 4, "SELECT 2"));
        assert!(!splitter.is_between_statements());
        let last = splitter.finish().expect("the unterminated statement");
        assert_eq!((last.text.as_str(), last.line), ("SELECT", 4));
        // An open block comment is not between statements (the REPL keeps the continuation prompt).
        let mut splitter = Splitter::new();
        splitter.push("/* a\n");
        assert!(!splitter.is_between_statements());
        splitter.push("b */\n-- c\n");
        assert!(splitter.is_between_statements());
    }

    #[test]
    fn statement_lines_skip_leading_blank_lines_and_comments() {
        let mut splitter = Splitter::new();
        let statements = splitter.push("\n\n-- first\n  SHOW TABLES;\n\n/* x */\n\n  -1;");
        assert_eq!(statements.iter().map(|s| s.line).collect::<Vec<_>>(), [4, 8]);
    }

    #[test]
    fn push_queries_are_recognized_outside_strings_and_comments() {
        let push = |text: &str| {
            let mut splitter = Splitter::new();
            splitter.push(text);
            splitter.finish().expect("a statement").push
        };
        assert!(push("SELECT * FROM order_summary EMIT CHANGES"));
        assert!(push("select *\nfrom v emit\n  changes limit 3"));
        assert!(push("SELECT * FROM v /* x */ EMIT /* y */ CHANGES"));
        assert!(!push("SELECT * FROM v"));
        assert!(!push("SELECT 'EMIT CHANGES' FROM v"));
        assert!(!push("SELECT * FROM v -- EMIT CHANGES"));
        assert!(!push("SELECT \"EMIT CHANGES\" FROM v"));
    }

    #[test]
    fn quit_words() {
        for line in ["quit\n", "  EXIT; \n", "\\q\n", "Quit;"] {
            assert!(is_quit(line), "{line:?}");
        }
        for line in ["quit it\n", "SELECT 1;\n", "\n"] {
            assert!(!is_quit(line), "{line:?}");
        }
    }

    #[test]
    fn tables_and_lines() {
        let reply = json!({
            "columns": [{"name": "orderId", "type": "STRING"}, {"name": "total", "type": "BIGINT"}],
            "rows": [["order-7", 24], ["order-8", null]]
        });
        assert_eq!(reply_text(&reply), "orderId  total\norder-7  24\norder-8  null\n(2 rows)");
        let one = json!({"columns": [{"name": "n", "type": "BIGINT"}], "rows": [[1]]});
        assert_eq!(reply_text(&one), "n\n1\n(1 row)");
        let none = json!({"columns": [{"name": "n", "type": "BIGINT"}], "rows": []});
        assert_eq!(reply_text(&none), "n\n(0 rows)");
        let created = json!({"status": "ok", "statement": "CREATE TABLE", "message": "Created table order_summary"});
        assert_eq!(reply_text(&created), "Created table order_summary");
        assert_eq!(reply_text(&json!({"status": "ok", "statement": "DROP TABLE"})), "DROP TABLE");
        let header = json!({"columns": [{"name": "orderId", "type": "STRING"}, {"name": "total", "type": "BIGINT"}]});
        assert_eq!(header_line(&header), "op      orderId  total");
        assert_eq!(change_line(&json!({"op": "upsert", "row": ["order-7", 24]})), "upsert  order-7  24");
        assert_eq!(change_line(&json!({"op": "delete", "row": ["order-7", null]})), "delete  order-7  null");
    }

    /// A stand-in top-level command, to parse `sql` arguments as the binary does.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        sql: SqlArgs,
    }

    #[test]
    fn arguments() {
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once(&"sql").chain(args));
        let cli = parse(&["-e", "SHOW TABLES", "-e", "SELECT 1; SELECT 2", "--continue-on-error"]).expect("parsed");
        assert_eq!(cli.sql.execute, ["SHOW TABLES", "SELECT 1; SELECT 2"]);
        assert!(cli.sql.continue_on_error);
        let cli = parse(&["-f", "-", "--limit", "2", "--min-sequence", "7", "--timeout-ms", "500"]).expect("parsed");
        assert_eq!(
            (cli.sql.file.as_deref(), cli.sql.limit, cli.sql.min_sequence, cli.sql.timeout_ms),
            (Some(std::path::Path::new("-")), Some(2), Some(7), Some(500))
        );
        assert!(parse(&["-e", "SELECT 1", "-f", "x.sql"]).is_err());
        assert!(parse(&["--limit", "-1"]).is_err());
    }
}
