//! `evident tail`: follows a stream, a partition, a topic or everything live through
//! `GET /v1/subscribe` (Server-Sent Events, read by [`super::sse`]); the command prints each event as it
//! arrives and, when the connection drops, reconnects with `Last-Event-ID` so nothing is missed or
//! repeated.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use evident_api::ErrorCode;
use serde_json::Value;

use super::client::{ApiError, Client};
use super::output;
use super::sse::{follow, Ended, SseMessage, SseParser};
use super::ClientOptions;

/// How many reconnection attempts in a row are made before giving up (about a minute of backoff).
const RECONNECT_ATTEMPTS_MAX: u32 = 8;

/// The first reconnection delay; it doubles on each failed attempt, up to [`RECONNECT_DELAY_MAX`].
const RECONNECT_DELAY_FIRST: Duration = Duration::from_millis(500);

/// The longest delay between reconnection attempts.
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(15);

/// A connection that lasted this long was healthy, even if no event came: its drop starts a new
/// series of reconnection attempts.
const HEALTHY_CONNECTION: Duration = Duration::from_secs(60);

/// `evident tail`.
#[derive(Debug, Args)]
#[command(after_long_help = "What is followed, and the `id` of each event (its resumable position):
  evident tail                          everything, in commit order        id = store-wide sequence
  evident tail bank                     one topic, in commit order         id = sequence
  evident tail bank --partition 0       one partition                      id = offset
  evident tail bank acc-1               one stream                         id = version

It first prints what already exists from the start position (default: the beginning; with
--from-end, only events committed after it starts), then
waits and prints each new event as it is committed: one line per event, or one JSON object per
line with --json. It runs until interrupted, or until --limit events were printed. When the
connection drops it reconnects with backoff (up to 8 attempts in a row, noted on stderr) and
resumes after the last event it printed.")]
pub struct TailArgs {
    #[command(flatten)]
    pub(super) client: ClientOptions,
    /// Follow only this topic (default: every topic).
    topic: Option<String>,
    /// Follow only this stream (key) of the topic.
    #[arg(requires = "topic")]
    key: Option<String>,
    /// Follow only this partition of the topic.
    #[arg(long, short = 'p', value_name = "P", requires = "topic", conflicts_with = "key")]
    partition: Option<u32>,
    /// Stream: start at this version (default 0).
    #[arg(long, value_name = "N", requires = "key", conflicts_with_all = ["partition", "from_offset", "from_sequence"])]
    from_version: Option<u64>,
    /// Partition: start at this offset (default 0).
    #[arg(long, value_name = "N", requires = "partition", conflicts_with_all = ["key", "from_sequence"])]
    from_offset: Option<u64>,
    /// Topic or everything: start at this store-wide sequence (default 0).
    #[arg(long, value_name = "N", conflicts_with_all = ["key", "partition"])]
    from_sequence: Option<u64>,
    /// Start at the end: print only events committed after `tail` starts (the position is read
    /// from the server first, so nothing committed meanwhile is missed).
    #[arg(long, conflicts_with_all = ["from_version", "from_offset", "from_sequence"])]
    from_end: bool,
    /// Exit after printing N events.
    #[arg(long, short = 'n', value_name = "N")]
    limit: Option<u64>,
}

/// The position after the last event of what `args` follows: the parameter to start from and
/// its value, read from the server (a stream that does not exist yet starts at version 0).
fn end_position(client: &Client, args: &TailArgs) -> anyhow::Result<(&'static str, u64)> {
    match (&args.topic, &args.key, args.partition) {
        (Some(topic), Some(key), _) => {
            let url = client.url(
                &["v1", "topics", topic, "streams", key],
                &[("direction", Some("backward".into())), ("limit", Some("1".into()))],
            )?;
            match client.get(url) {
                Ok(reply) => {
                    let page: evident_api::streams::StreamPage = serde_json::from_value(reply)?;
                    Ok(("from_version", page.current_version + 1))
                }
                Err(e) if e.downcast_ref::<ApiError>().and_then(|a| a.code) == Some(ErrorCode::StreamNotFound) => {
                    Ok(("from_version", 0))
                }
                Err(e) => Err(e),
            }
        }
        (Some(topic), None, Some(partition)) => {
            let url = client.url(
                &["v1", "topics", topic, "partitions", &partition.to_string(), "records"],
                &[("limit", Some("1".into()))],
            )?;
            let page: evident_api::records::PartitionPage = serde_json::from_value(client.get(url)?)?;
            Ok(("from_offset", page.high_watermark))
        }
        _ => {
            // An empty page far past the end: its `head_sequence` is the next commit sequence.
            let url = client
                .url(&["v1", "all"], &[("from_sequence", Some(u64::MAX.to_string())), ("limit", Some("1".into()))])?;
            let page: evident_api::records::AllPage = serde_json::from_value(client.get(url)?)?;
            Ok(("from_sequence", page.head_sequence))
        }
    }
}

/// Runs `evident tail`.
pub fn run(args: TailArgs) -> anyhow::Result<()> {
    let client = Client::for_streaming(&args.client.server)?;
    let mut args = args;
    if args.from_end {
        match end_position(&client, &args)? {
            ("from_version", v) => args.from_version = Some(v),
            ("from_offset", v) => args.from_offset = Some(v),
            (_, v) => args.from_sequence = Some(v),
        }
    }
    let query = [
        ("topic", args.topic.clone()),
        ("key", args.key.clone()),
        ("partition", args.partition.map(|p| p.to_string())),
        ("from_version", args.from_version.map(|v| v.to_string())),
        ("from_offset", args.from_offset.map(|v| v.to_string())),
        ("from_sequence", args.from_sequence.map(|v| v.to_string())),
    ];
    let url = client.url(&["v1", "subscribe"], &query)?;
    let limit = args.limit.unwrap_or(u64::MAX);
    if limit == 0 {
        return Ok(());
    }
    let mut parser = SseParser::new();
    let mut printed = 0u64;
    // The first connection must succeed: a server that is not there, or that refuses the request
    // (unknown topic), is an error now, not something to retry.
    let mut response = client.subscribe(url.clone(), None)?;
    let mut failures = 0u32;
    loop {
        let connected_at = Instant::now();
        let ended = follow(&mut response, &mut parser, &mut |message| {
            if print_message(message, args.client.json)? {
                printed += 1;
            }
            failures = 0;
            Ok(printed < limit)
        })?;
        if matches!(ended, Ended::Stopped) {
            return Ok(());
        }
        let reason = ended.reason();
        if connected_at.elapsed() >= HEALTHY_CONNECTION {
            // Only failures in a row count: a quiet subscription dropped after a long life (a server
            // restart) gets the full number of attempts again.
            failures = 0;
        }
        parser.reset_connection();
        let resume = parser.last_id().map_or("from the start".to_owned(), |id| format!("after id {id}"));
        eprintln!("evident: subscription dropped ({reason}); reconnecting, to resume {resume}");
        response = loop {
            failures += 1;
            if failures > RECONNECT_ATTEMPTS_MAX {
                anyhow::bail!(
                    "lost the subscription to {} and could not reconnect in {RECONNECT_ATTEMPTS_MAX} attempts",
                    client.base()
                );
            }
            thread::sleep(reconnect_delay(failures));
            match client.subscribe(url.clone(), parser.last_id()) {
                Ok(response) => break response,
                // The server answered but refuses (the topic was deleted, say): retrying will not help.
                Err(e) if e.downcast_ref::<ApiError>().is_some_and(|a| a.status.is_client_error()) => return Err(e),
                Err(e) => eprintln!("evident: reconnection attempt {failures}/{RECONNECT_ATTEMPTS_MAX} failed: {e:#}"),
            }
        };
        eprintln!("evident: reconnected");
    }
}

/// Prints one message, an event, as a line for people or as one JSON line, and says whether it
/// printed one. An `error` message (the server ending the subscription with a reason) becomes the
/// command's error.
fn print_message(message: &SseMessage, json: bool) -> anyhow::Result<bool> {
    let value: Value = serde_json::from_str(&message.data)
        .with_context(|| format!("an event-stream message is not JSON: {}", output::truncate(&message.data, 200)))?;
    if message.event == "error" {
        let error = value.get("error").unwrap_or(&value);
        let text = error.get("message").and_then(Value::as_str).map_or_else(|| error.to_string(), str::to_owned);
        let code = error.get("code").and_then(Value::as_str).unwrap_or("error");
        anyhow::bail!("the server ended the subscription: {text} ({code})");
    }
    if message.event != "message" {
        // Other event types are not events of the store (a future notice): skip them.
        return Ok(false);
    }
    if json {
        output::print_json_line(&value)?;
    } else {
        output::print_text(&output::event_line(&value))?;
    }
    Ok(true)
}

/// The delay before reconnection attempt `attempt` (1-based): doubling from the first delay, capped.
fn reconnect_delay(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(10);
    (RECONNECT_DELAY_FIRST * factor).min(RECONNECT_DELAY_MAX)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// A stand-in top-level command, to parse `tail` arguments as the binary does.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        tail: TailArgs,
    }

    #[test]
    fn arguments() {
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once(&"tail").chain(args));
        for good in [
            &[][..],
            &["--from-sequence", "5"],
            &["bank", "--from-sequence", "5"],
            &["bank", "acc-1", "--from-version", "2", "--limit", "3"],
            &["bank", "--partition", "1", "--from-offset", "7"],
        ] {
            assert!(parse(good).is_ok(), "{good:?} was refused");
        }
        for bad in [
            &["--from-version", "1"][..],
            &["bank", "--from-version", "1"],
            &["bank", "--partition", "0", "--from-version", "1"],
            &["bank", "acc-1", "--from-offset", "1"],
            &["bank", "acc-1", "--partition", "0"],
            &["bank", "acc-1", "--from-sequence", "1"],
            &["--partition", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn backoff() {
        assert_eq!(reconnect_delay(1), Duration::from_millis(500));
        assert_eq!(reconnect_delay(2), Duration::from_secs(1));
        assert_eq!(reconnect_delay(5), Duration::from_secs(8));
        assert_eq!(reconnect_delay(8), RECONNECT_DELAY_MAX);
    }
}
