//! `evident append`: appends one event (built from flags) or a batch (from a JSON file) to an
//! entity stream with `POST /v1/topics/{topic}/streams/{key}`, optionally only if the stream is at
//! an expected version; a batch is atomic.

use std::fs;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{ArgGroup, Args};
use serde_json::{json, Map, Value};

use super::client::Client;
use super::output::{self, cell};
use super::ClientOptions;

/// `evident append`.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("payload").args(["data", "data_file", "data_stdin"]).multiple(false)),
    after_long_help = "Examples:
  evident append bank acc-1 --type MoneyDeposited --data '{\"amount\": 50}' --expected-version no_stream
  evident append bank acc-1 --type MoneyWithdrawn --data-file withdrawal.json --id w-2026-0001
  evident append bank acc-1 --events-file batch.json --expected-version 3

The reply lists each event's id, offset (in its partition), version (in its stream) and store-wide
sequence. Appending an --id the stream already holds, with the same content, appends nothing and
shows the original positions (a duplicate); with other content it is refused (event_id_reused).
A wrong --expected-version appends nothing and names the stream's current version
(wrong_expected_version, exit code 1)."
)]
pub struct AppendArgs {
    #[command(flatten)]
    pub(super) client: ClientOptions,
    /// The topic (event category), e.g. `bank`.
    topic: String,
    /// The stream key (the entity's id), e.g. `acc-1`.
    key: String,
    /// The event's type (CloudEvents `type`), e.g. `MoneyDeposited`.
    #[arg(long = "type", short = 't', value_name = "TYPE", required_unless_present = "events_file")]
    event_type: Option<String>,
    /// The payload as JSON text (quote a string: '"text"'). Without any --data* the event has no data.
    #[arg(long, short = 'd', value_name = "JSON", allow_hyphen_values = true)]
    data: Option<String>,
    /// Read the JSON payload from a file.
    #[arg(long, value_name = "PATH")]
    data_file: Option<PathBuf>,
    /// Read the JSON payload from stdin.
    #[arg(long)]
    data_stdin: bool,
    /// The event id (CloudEvents `id`), unique in the stream: makes a retry idempotent. The server
    /// generates a UUID when absent.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// The event's source (CloudEvents `source`); the server's default is `/evident/http`.
    #[arg(long, value_name = "URI")]
    source: Option<String>,
    /// When the event happened (CloudEvents `time`, RFC 3339), kept as the `ce_time` header.
    #[arg(long, value_name = "RFC3339")]
    time: Option<String>,
    /// Append a batch instead: a JSON array of CloudEvents objects (`{"type", "data", "id", ...}`),
    /// or `-` for stdin. All or none are appended.
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with_all = ["event_type", "data", "data_file", "data_stdin", "id", "source", "time"]
    )]
    events_file: Option<PathBuf>,
    /// Append only if the stream is at this point: `any` (the default), `no_stream` (it has no
    /// event yet), `stream_exists`, or N, the version of its last event (the first event is 0).
    #[arg(long, short = 'e', value_name = "any|no_stream|stream_exists|N", value_parser = parse_expected_version)]
    expected_version: Option<ExpectedVersion>,
}

/// The `expected_version` of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds.
    Any,
    /// Append only to a stream without events.
    NoStream,
    /// Append only to a stream with at least one event.
    StreamExists,
    /// Append only if the stream's last event has this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// The value of `expected_version` in a request body: a string, or the version as a number.
    pub fn to_json(self) -> Value {
        match self {
            ExpectedVersion::Any => json!("any"),
            ExpectedVersion::NoStream => json!("no_stream"),
            ExpectedVersion::StreamExists => json!("stream_exists"),
            ExpectedVersion::Exact(version) => json!(version),
        }
    }
}

/// Parses `--expected-version`; the hyphenated spellings (`no-stream`) are accepted too.
fn parse_expected_version(text: &str) -> Result<ExpectedVersion, String> {
    match text.trim().to_ascii_lowercase().replace('-', "_").as_str() {
        "any" => Ok(ExpectedVersion::Any),
        "no_stream" => Ok(ExpectedVersion::NoStream),
        "stream_exists" => Ok(ExpectedVersion::StreamExists),
        other => other
            .parse::<u64>()
            .map(ExpectedVersion::Exact)
            .map_err(|_| format!("expected any, no_stream, stream_exists or a version number, got {text:?}")),
    }
}

/// Runs `evident append`.
pub fn run(args: AppendArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client.server)?;
    let events = match &args.events_file {
        Some(path) => read_events_file(path)?,
        None => vec![single_event(&args)?],
    };
    let body = append_body(args.expected_version, events);
    let url = client.url(&["v1", "topics", &args.topic, "streams", &args.key], &[])?;
    let reply = client.post(url, &body)?;
    if args.client.json {
        return Ok(output::print_json(&reply)?);
    }
    Ok(output::print_text(&reply_text(&reply, &args.topic, &args.key))?)
}

/// The request body: always the batch form, which carries the expected version for one event as
/// well as for many.
fn append_body(expected_version: Option<ExpectedVersion>, events: Vec<Value>) -> Value {
    let mut body = Map::new();
    if let Some(expected) = expected_version {
        body.insert("expected_version".into(), expected.to_json());
    }
    body.insert("events".into(), Value::Array(events));
    Value::Object(body)
}

/// The one event the flags describe.
fn single_event(args: &AppendArgs) -> anyhow::Result<Value> {
    // clap makes --type required unless --events-file is given, and this is only called without it.
    let event_type = args.event_type.as_deref().context("--type is required")?;
    let mut event = Map::new();
    event.insert("type".into(), json!(event_type));
    let data = if let Some(text) = &args.data {
        Some(parse_data(text, "--data")?)
    } else if let Some(path) = &args.data_file {
        let text = fs::read_to_string(path).with_context(|| format!("reading --data-file {}", path.display()))?;
        Some(parse_data(&text, &format!("--data-file {}", path.display()))?)
    } else if args.data_stdin {
        let mut text = String::new();
        io::stdin().read_to_string(&mut text).context("reading the payload from stdin")?;
        Some(parse_data(&text, "the payload on stdin")?)
    } else {
        None
    };
    if let Some(data) = data {
        event.insert("data".into(), data);
    }
    for (name, value) in [("id", &args.id), ("source", &args.source), ("time", &args.time)] {
        if let Some(value) = value {
            event.insert(name.into(), json!(value));
        }
    }
    Ok(Value::Object(event))
}

/// Parses a payload as JSON, with a hint for the commonest mistake (an unquoted string).
fn parse_data(text: &str, what: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text)
        .with_context(|| format!("{what} is not valid JSON (to send a string, quote it: --data '\"text\"')"))
}

/// Reads `--events-file`: a JSON array of event objects (a single object is taken as a batch of one).
fn read_events_file(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        io::stdin().read_to_string(&mut text).context("reading events from stdin")?;
        text
    } else {
        fs::read_to_string(path).with_context(|| format!("reading --events-file {}", path.display()))?
    };
    parse_events(&text).with_context(|| format!("--events-file {}", path.display()))
}

/// Parses a batch: an array of objects, or one object.
fn parse_events(text: &str) -> anyhow::Result<Vec<Value>> {
    let events = match serde_json::from_str::<Value>(text).context("not valid JSON")? {
        Value::Array(events) => events,
        event @ Value::Object(_) => vec![event],
        _ => anyhow::bail!("expected a JSON array of event objects"),
    };
    if events.is_empty() {
        anyhow::bail!("the batch holds no event");
    }
    if let Some(i) = events.iter().position(|e| !e.is_object()) {
        anyhow::bail!("element {i} of the batch is not a JSON object");
    }
    Ok(events)
}

/// The reply for people: what happened, then each event's positions.
fn reply_text(reply: &Value, topic: &str, key: &str) -> String {
    let events = reply.get("events").and_then(Value::as_array).cloned().unwrap_or_default();
    let count = events.len();
    let noun = if count == 1 { "event" } else { "events" };
    let partition = cell(reply.get("partition"));
    let headline = if reply.get("duplicate").and_then(Value::as_bool).unwrap_or(false) {
        format!(
            "Duplicate: {topic}/{key} already holds {count} {noun} with these ids; nothing was appended \
             (original positions shown)."
        )
    } else {
        format!("Appended {count} {noun} to {topic}/{key} (partition {partition}).")
    };
    let mut table = output::table(&["ID", "OFFSET", "VERSION", "SEQUENCE"]);
    for event in &events {
        table.add_row(vec![
            cell(event.get("id")),
            cell(event.get("offset")),
            cell(event.get("version")),
            cell(event.get("sequence")),
        ]);
    }
    format!("{headline}\n{}", output::render_table(&table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_versions() {
        assert_eq!(parse_expected_version("any"), Ok(ExpectedVersion::Any));
        assert_eq!(parse_expected_version("no_stream"), Ok(ExpectedVersion::NoStream));
        assert_eq!(parse_expected_version("no-stream"), Ok(ExpectedVersion::NoStream));
        assert_eq!(parse_expected_version("stream_exists"), Ok(ExpectedVersion::StreamExists));
        assert_eq!(parse_expected_version("7"), Ok(ExpectedVersion::Exact(7)));
        assert!(parse_expected_version("-1").is_err());
        assert!(parse_expected_version("latest").is_err());
        assert_eq!(ExpectedVersion::Exact(7).to_json(), json!(7));
        assert_eq!(ExpectedVersion::NoStream.to_json(), json!("no_stream"));
    }

    #[test]
    fn bodies() {
        let event = json!({"type": "Opened"});
        assert_eq!(append_body(None, vec![event.clone()]), json!({"events": [{"type": "Opened"}]}));
        assert_eq!(
            append_body(Some(ExpectedVersion::Exact(3)), vec![event]),
            json!({"expected_version": 3, "events": [{"type": "Opened"}]})
        );
    }

    #[test]
    fn batches() {
        assert_eq!(parse_events(r#"[{"type":"A"},{"type":"B"}]"#).unwrap().len(), 2);
        assert_eq!(parse_events(r#"{"type":"A"}"#).unwrap().len(), 1);
        assert!(parse_events("[]").is_err());
        assert!(parse_events("[1]").is_err());
        assert!(parse_events("nope").is_err());
    }

    #[test]
    fn reply_for_people() {
        let reply = json!({"topic": "bank", "key": "acc-1", "partition": 0, "duplicate": false,
            "events": [{"id": "e-1", "offset": 4, "version": 0, "sequence": 9}]});
        assert_eq!(
            reply_text(&reply, "bank", "acc-1"),
            "Appended 1 event to bank/acc-1 (partition 0).\nID   OFFSET  VERSION  SEQUENCE\ne-1  4       0        9"
        );
        let duplicate = json!({"partition": 0, "duplicate": true, "events": []});
        assert!(reply_text(&duplicate, "bank", "acc-1").starts_with("Duplicate: bank/acc-1"));
    }
}
