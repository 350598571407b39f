//! `evident append`: appends one event (built from flags) or a batch (from a JSON file) to an
//! entity stream with `POST /v1/topics/{topic}/streams/{key}`, optionally only if the stream is at
//! an expected version; a batch is atomic.

use std::fs;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{ArgGroup, Args};
use evident_api::streams::{AppendBatch, AppendEvent, AppendRequest, AppendResult, ExpectedState, ExpectedVersion};
use serde_json::value::RawValue;
use serde_json::Value;

use super::client::{self, Client, Usage};
use super::output;
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

/// Parses `--expected-version`; the hyphenated spellings (`no-stream`) are accepted too.
fn parse_expected_version(text: &str) -> Result<ExpectedVersion, String> {
    match text.trim().to_ascii_lowercase().replace('-', "_").as_str() {
        "any" => Ok(ExpectedVersion::State(ExpectedState::Any)),
        "no_stream" => Ok(ExpectedVersion::State(ExpectedState::NoStream)),
        "stream_exists" => Ok(ExpectedVersion::State(ExpectedState::StreamExists)),
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
    let result: AppendResult = client::decode(&reply, "an append result")?;
    Ok(output::print_text(&reply_text(&result, &args.topic, &args.key))?)
}

/// The request body: always the batch form, which carries the expected version for one event as
/// well as for many.
fn append_body(expected_version: Option<ExpectedVersion>, events: Vec<AppendEvent>) -> AppendRequest {
    AppendRequest::Batch(AppendBatch { expected_version, events })
}

/// The one event the flags describe.
fn single_event(args: &AppendArgs) -> anyhow::Result<AppendEvent> {
    // clap makes --type required unless --events-file is given, and this is only called without it.
    let event_type = args.event_type.as_deref().context("--type is required")?;
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
    Ok(AppendEvent {
        event_type: event_type.to_owned(),
        data,
        data_base64: None,
        id: args.id.clone(),
        source: args.source.clone(),
        time: args.time.clone(),
        datacontenttype: None,
        specversion: None,
        subject: None,
        dataschema: None,
        headers: None,
    })
}

/// Parses a payload as JSON, with a hint for the commonest mistake (an unquoted string).
fn parse_data(text: &str, what: &str) -> anyhow::Result<Box<RawValue>> {
    let value: Value = serde_json::from_str(text)
        .with_context(|| format!("{what} is not valid JSON (to send a string, quote it: --data '\"text\"')"))?;
    compact(&value)
}

/// A payload as compact JSON text, as the CLI has always sent it (the server stores the text it
/// is given byte for byte).
fn compact(value: &Value) -> anyhow::Result<Box<RawValue>> {
    serde_json::value::to_raw_value(value).context("encoding the payload")
}

/// Reads `--events-file`: a JSON array of event objects (a single object is taken as a batch of one).
fn read_events_file(path: &Path) -> anyhow::Result<Vec<AppendEvent>> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        io::stdin().read_to_string(&mut text).context("reading events from stdin")?;
        text
    } else {
        fs::read_to_string(path).with_context(|| format!("reading --events-file {}", path.display()))?
    };
    parse_events(&text).with_context(|| format!("--events-file {}", path.display()))
}

/// Parses a batch: an array of objects, or one object, each an event as the API takes it. A
/// field the API does not know is refused here, before any request, as the server would
/// refuse it (`malformed_json`).
fn parse_events(text: &str) -> anyhow::Result<Vec<AppendEvent>> {
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
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            // From text, not from the `Value`: `data` is JSON text (`RawValue`), which only a
            // text deserializer yields.
            let mut event: AppendEvent = serde_json::from_str(&event.to_string())
                .map_err(|e| Usage(format!("element {i} of the batch is not an event: {e}")))?;
            // Compact, as `--data` is: the same bytes stored whichever way the event came.
            if let Some(data) = &event.data {
                let value: Value = serde_json::from_str(data.get()).context("re-reading the payload")?;
                event.data = Some(compact(&value)?);
            }
            Ok(event)
        })
        .collect()
}

/// The reply for people: what happened, then each event's positions.
fn reply_text(reply: &AppendResult, topic: &str, key: &str) -> String {
    let count = reply.events.len();
    let noun = if count == 1 { "event" } else { "events" };
    let partition = reply.partition;
    let headline = if reply.duplicate {
        format!(
            "Duplicate: {topic}/{key} already holds {count} {noun} with these ids; nothing was appended \
             (original positions shown)."
        )
    } else {
        format!("Appended {count} {noun} to {topic}/{key} (partition {partition}).")
    };
    let mut table = output::table(&["ID", "OFFSET", "VERSION", "SEQUENCE"]);
    for event in &reply.events {
        table.add_row(vec![
            event.id.clone(),
            event.offset.to_string(),
            event.version.map_or_else(|| "-".to_owned(), |v| v.to_string()),
            event.sequence.to_string(),
        ]);
    }
    format!("{headline}\n{}", output::render_table(&table))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn expected_versions() {
        let state = |s| Ok(ExpectedVersion::State(s));
        assert_eq!(parse_expected_version("any"), state(ExpectedState::Any));
        assert_eq!(parse_expected_version("no_stream"), state(ExpectedState::NoStream));
        assert_eq!(parse_expected_version("no-stream"), state(ExpectedState::NoStream));
        assert_eq!(parse_expected_version("stream_exists"), state(ExpectedState::StreamExists));
        assert_eq!(parse_expected_version("7"), Ok(ExpectedVersion::Exact(7)));
        assert!(parse_expected_version("-1").is_err());
        assert!(parse_expected_version("latest").is_err());
    }

    #[test]
    fn bodies() {
        let body = |expected| {
            let events = parse_events(r#"{"type": "Opened", "data": {"n":  1}}"#).expect("an event");
            serde_json::to_value(append_body(expected, events)).expect("json")
        };
        assert_eq!(body(None), json!({"events": [{"type": "Opened", "data": {"n": 1}}]}));
        assert_eq!(
            body(Some(ExpectedVersion::State(ExpectedState::NoStream))),
            json!({"expected_version": "no_stream", "events": [{"type": "Opened", "data": {"n": 1}}]})
        );
        assert_eq!(body(Some(ExpectedVersion::Exact(3)))["expected_version"], json!(3));
        assert_eq!(parse_data(r#"{"n":  1}"#, "--data").expect("json").get(), r#"{"n":1}"#);
    }

    #[test]
    fn batches() {
        assert_eq!(parse_events(r#"[{"type":"A"},{"type":"B"}]"#).unwrap().len(), 2);
        assert_eq!(parse_events(r#"{"type":"A"}"#).unwrap().len(), 1);
        assert!(parse_events("[]").is_err());
        assert!(parse_events("[1]").is_err());
        assert!(parse_events("nope").is_err());
        let typo = parse_events(r#"[{"type":"A"},{"type":"B","dta":1}]"#).expect_err("an unknown field");
        assert!(typo.downcast_ref::<Usage>().is_some_and(|u| u.0.contains("element 1")), "{typo:#}");
    }

    #[test]
    fn reply_for_people() {
        let reply = json!({"topic": "bank", "key": "acc-1", "partition": 0, "duplicate": false,
            "events": [{"id": "e-1", "offset": 4, "version": 0, "sequence": 9}]});
        let reply: AppendResult = client::decode(&reply, "an append result").expect("decodes");
        assert_eq!(
            reply_text(&reply, "bank", "acc-1"),
            "Appended 1 event to bank/acc-1 (partition 0).\nID   OFFSET  VERSION  SEQUENCE\ne-1  4       0        9"
        );
        let duplicate = json!({"topic": "bank", "key": "acc-1", "partition": 0, "duplicate": true, "events": []});
        let duplicate: AppendResult = client::decode(&duplicate, "an append result").expect("decodes");
        assert!(reply_text(&duplicate, "bank", "acc-1").starts_with("Duplicate: bank/acc-1"));
    }
}
