//! `evident dlq`: the dead-letter queues of projections over `/v1/dead-letters`: list the
//! events a projection parked (or holds behind them), and ask its runner to retry a stream's
//! entries or skip the first of them. Requests are records the runner acts on when its feed
//! reaches them, so they work whether the projection is running or not.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::Client;
use super::output::{self, cell};
use super::ClientOptions;

/// The longest error message a table cell shows before it is cut; `--json` prints it whole.
const ERROR_WIDTH_MAX: usize = 60;

/// `evident dlq`: the shared options and a subcommand.
#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(flatten)]
    pub(super) client: ClientOptions,
    #[command(subcommand)]
    command: DlqCommand,
}

/// The dead-letter subcommands.
#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List a projection's parked and held events by stream, or, without PROJECTION, every
    /// projection that has a dead-letter topic with its counts.
    List {
        /// The projection (its dead-letter topic is PROJECTION.dlq).
        #[arg(value_name = "PROJECTION")]
        projection: Option<String>,
    },
    /// Ask the projection's runner to retry a stream's entries, in order, stopping at the
    /// first that fails again.
    Retry {
        /// The projection.
        #[arg(value_name = "PROJECTION")]
        projection: String,
        /// The original stream, `topic/key`, as `dlq list` shows it.
        #[arg(value_name = "STREAM")]
        stream: String,
    },
    /// Ask the projection's runner to skip a stream's first entry (it is never applied), then
    /// retry the rest.
    Skip {
        /// The projection.
        #[arg(value_name = "PROJECTION")]
        projection: String,
        /// The original stream, `topic/key`, as `dlq list` shows it.
        #[arg(value_name = "STREAM")]
        stream: String,
        /// Skip only if the first entry is this one (its SEQUENCE in `dlq list`); refused
        /// otherwise, so a skip never hits another entry than the one looked at.
        #[arg(long, value_name = "N")]
        sequence: Option<u64>,
    },
}

/// Runs a dead-letter subcommand.
pub fn run(args: DlqArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client.server)?;
    let reply = match &args.command {
        DlqCommand::List { projection: None } => client.get(client.url(&["v1", "dead-letters"], &[])?)?,
        DlqCommand::List { projection: Some(p) } => client.get(client.url(&["v1", "dead-letters", p], &[])?)?,
        DlqCommand::Retry { projection, stream } => {
            client.post(client.url(&["v1", "dead-letters", projection, "retry"], &[])?, &json!({ "stream": stream }))?
        }
        DlqCommand::Skip { projection, stream, sequence } => {
            let mut body = json!({ "stream": stream });
            if let Some(n) = sequence {
                body["sequence"] = json!(n);
            }
            client.post(client.url(&["v1", "dead-letters", projection, "skip"], &[])?, &body)?
        }
    };
    if args.client.json {
        return Ok(output::print_json(&reply)?);
    }
    let text = match &args.command {
        DlqCommand::List { projection: None } => projections_text(&reply),
        DlqCommand::List { projection: Some(p) } => entries_text(p, &reply),
        DlqCommand::Retry { projection, stream } => format!(
            "Asked projection {projection} to retry {} of stream {stream}; its runner acts on the request when it reaches it.",
            count(reply.get("entries"), "entry", "entries")
        ),
        DlqCommand::Skip { projection, stream, .. } => format!(
            "Asked projection {projection} to skip entry {} of stream {stream} and retry the rest; its runner acts on the request when it reaches it.",
            cell(reply.get("sequence"))
        ),
    };
    Ok(output::print_text(&text)?)
}

/// `n thing(s)`.
fn count(n: Option<&Value>, one: &str, many: &str) -> String {
    match n.and_then(Value::as_u64) {
        Some(1) => format!("1 {one}"),
        Some(n) => format!("{n} {many}"),
        None => format!("{} {many}", cell(n)),
    }
}

/// The elements of an array field, or none.
fn array<'a>(value: &'a Value, field: &str) -> &'a [Value] {
    value.get(field).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// `dlq list` without a projection, for people.
fn projections_text(reply: &Value) -> String {
    let projections = array(reply, "projections");
    if projections.is_empty() {
        return "No dead-letter topics.".to_owned();
    }
    let mut table = output::table(&["PROJECTION", "TOPIC", "STREAMS", "PARKED", "HELD"]);
    for p in projections {
        table.add_row(vec![
            cell(p.get("projection")),
            cell(p.get("topic")),
            cell(p.get("streams")),
            cell(p.get("parked")),
            cell(p.get("held")),
        ]);
    }
    output::render_table(&table)
}

/// `dlq list PROJECTION`, for people: one row per entry, streams in order.
fn entries_text(projection: &str, reply: &Value) -> String {
    let streams = array(reply, "streams");
    if streams.is_empty() {
        return format!("Projection {projection} has no parked events.");
    }
    let mut table = output::table(&["STREAM", "SEQUENCE", "KIND", "TYPE", "ATTEMPTS", "ERROR"]);
    for stream in streams {
        for entry in array(stream, "entries") {
            table.add_row(vec![
                cell(stream.get("stream")),
                cell(entry.get("sequence")),
                cell(entry.get("kind")),
                cell(entry.get("event_type")),
                cell(entry.get("attempts")),
                output::truncate(&cell(entry.get("error")).replace('\n', " "), ERROR_WIDTH_MAX),
            ]);
        }
    }
    output::render_table(&table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables() {
        let reply = json!({"projection": "p", "topic": "p.dlq", "streams": [
            {"stream": "orders/1", "entries": [
                {"sequence": 7, "kind": "parked", "event_type": "OrderPlaced", "attempts": 3, "error": "boom\nat line 2"},
                {"sequence": 9, "kind": "held", "event_type": "OrderShipped", "attempts": 0, "error": "held"}
            ]}
        ]});
        let expected = "\
STREAM    SEQUENCE  KIND    TYPE          ATTEMPTS  ERROR
orders/1  7         parked  OrderPlaced   3         boom at line 2
orders/1  9         held    OrderShipped  0         held";
        assert_eq!(entries_text("p", &reply), expected);
        assert_eq!(entries_text("p", &json!({"streams": []})), "Projection p has no parked events.");
        let list =
            json!({"projections": [{"projection": "p", "topic": "p.dlq", "streams": 1, "parked": 1, "held": 1}]});
        assert_eq!(
            projections_text(&list),
            "PROJECTION  TOPIC  STREAMS  PARKED  HELD\np           p.dlq  1        1       1"
        );
        assert_eq!(count(Some(&json!(1)), "entry", "entries"), "1 entry");
        assert_eq!(count(Some(&json!(2)), "entry", "entries"), "2 entries");
    }
}
