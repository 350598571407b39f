//! `evident dlq`: the dead-letter queues of projections over `/v1/dead-letters`: list the
//! events a projection parked (or holds behind them), and ask its runner to retry a stream's
//! entries or skip the first of them. Requests are records the runner acts on when its feed
//! reaches them, so they work whether the projection is running or not.

use clap::{Args, Subcommand};
use evident_api::dead_letters::{
    DeadLetterList, DeadLetterQueue, EntryKind, RetryDeadLetters, RetryRequested, SkipDeadLetter, SkipRequested,
};

use super::client::{self, Client};
use super::output;
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
            let body = RetryDeadLetters { stream: stream.clone() };
            client.post(client.url(&["v1", "dead-letters", projection, "retry"], &[])?, &body)?
        }
        DlqCommand::Skip { projection, stream, sequence } => {
            let body = SkipDeadLetter { stream: stream.clone(), sequence: *sequence };
            client.post(client.url(&["v1", "dead-letters", projection, "skip"], &[])?, &body)?
        }
    };
    if args.client.json {
        return Ok(output::print_json(&reply)?);
    }
    let text = match &args.command {
        DlqCommand::List { projection: None } => projections_text(&client::decode(&reply, "a dead-letter list")?),
        DlqCommand::List { projection: Some(p) } => entries_text(p, &client::decode(&reply, "a dead-letter queue")?),
        DlqCommand::Retry { projection, stream } => {
            let reply: RetryRequested = client::decode(&reply, "a retry request")?;
            format!(
                "Asked projection {projection} to retry {} of stream {stream}; its runner acts on the request when it reaches it.",
                count(reply.entries, "entry", "entries")
            )
        }
        DlqCommand::Skip { projection, stream, .. } => {
            let reply: SkipRequested = client::decode(&reply, "a skip request")?;
            format!(
                "Asked projection {projection} to skip entry {} of stream {stream} and retry the rest; its runner acts on the request when it reaches it.",
                reply.sequence
            )
        }
    };
    Ok(output::print_text(&text)?)
}

/// `n thing(s)`.
fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// `dlq list` without a projection, for people.
fn projections_text(reply: &DeadLetterList) -> String {
    if reply.projections.is_empty() {
        return "No dead-letter topics.".to_owned();
    }
    let mut table = output::table(&["PROJECTION", "TOPIC", "STREAMS", "PARKED", "HELD"]);
    for p in &reply.projections {
        table.add_row(vec![
            p.projection.clone(),
            p.topic.clone(),
            p.streams.to_string(),
            p.parked.to_string(),
            p.held.to_string(),
        ]);
    }
    output::render_table(&table)
}

/// `dlq list PROJECTION`, for people: one row per entry, streams in order.
fn entries_text(projection: &str, reply: &DeadLetterQueue) -> String {
    if reply.streams.is_empty() {
        return format!("Projection {projection} has no parked events.");
    }
    let mut table = output::table(&["STREAM", "SEQUENCE", "KIND", "TYPE", "ATTEMPTS", "ERROR"]);
    for stream in &reply.streams {
        for entry in &stream.entries {
            let kind = match entry.kind {
                EntryKind::Parked => "parked",
                EntryKind::Held => "held",
            };
            table.add_row(vec![
                stream.stream.clone(),
                entry.sequence.to_string(),
                kind.to_owned(),
                output::or_dash(entry.event_type.as_deref()),
                entry.attempts.to_string(),
                output::truncate(&output::or_dash(entry.error.as_deref()).replace('\n', " "), ERROR_WIDTH_MAX),
            ]);
        }
    }
    output::render_table(&table)
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::{json, Value};

    use super::*;

    fn typed<T: DeserializeOwned>(reply: Value) -> T {
        client::decode(&reply, "the reply").expect("decodes")
    }

    #[test]
    fn tables() {
        let entry = |sequence, kind, event_type, attempts, error| {
            json!({"sequence": sequence, "kind": kind, "topic": "orders", "partition": 0, "offset": sequence,
                "event_type": event_type, "event_id": null, "error": error, "attempts": attempts,
                "parked_at": "2026-12-03T10:00:00.000Z"})
        };
        let reply = typed(json!({"projection": "p", "topic": "p.dlq", "streams": [
            {"stream": "orders/1", "entries": [
                entry(7, "parked", "OrderPlaced", 3, "boom\nat line 2"),
                entry(9, "held", "OrderShipped", 0, "held"),
            ]}
        ]}));
        let expected = "\
STREAM    SEQUENCE  KIND    TYPE          ATTEMPTS  ERROR
orders/1  7         parked  OrderPlaced   3         boom at line 2
orders/1  9         held    OrderShipped  0         held";
        assert_eq!(entries_text("p", &reply), expected);
        let empty = typed(json!({"projection": "p", "topic": "p.dlq", "streams": []}));
        assert_eq!(entries_text("p", &empty), "Projection p has no parked events.");
        let list = typed(
            json!({"projections": [{"projection": "p", "topic": "p.dlq", "streams": 1, "parked": 1, "held": 1}]}),
        );
        assert_eq!(
            projections_text(&list),
            "PROJECTION  TOPIC  STREAMS  PARKED  HELD\np           p.dlq  1        1       1"
        );
        assert_eq!(count(1, "entry", "entries"), "1 entry");
        assert_eq!(count(2, "entry", "entries"), "2 entries");
    }
}
