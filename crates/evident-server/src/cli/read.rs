//! `evident read`: reads one entity stream, one partition, or everything in commit order, following
//! the server's paging cursor (`next_version`, `next_offset`, `next_sequence`) until the end or
//! `--limit`, with a progress bar on stderr for long reads.

use std::io::{self, IsTerminal as _};
use std::time::Duration;

use clap::{ArgGroup, Args};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use evident_api::records::{AllPage, PartitionPage};
use evident_api::streams::StreamPage;

use super::client::{self, Client};
use super::output::{self, EventColumns};
use super::ClientOptions;

/// The page size the server allows at most.
const PAGE_SIZE_MAX: u32 = evident_api::limits::READ_LIMIT_MAX as u32;

/// `evident read`.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("what").args(["key", "partition", "all"]).required(true).multiple(false)),
    override_usage = "evident read <TOPIC> <KEY> [STREAM OPTIONS]
       evident read <TOPIC> --partition <P> [PARTITION OPTIONS]
       evident read --all [--from-sequence <N>]",
    after_long_help = "Examples:
  evident read bank acc-1                                    one stream, by version (0 is the first)
  evident read bank acc-1 --backward --limit 1               its last event
  evident read bank acc-1 --as-of-time 2026-11-22T10:00:00Z  the stream as it was then
  evident read bank --partition 0 --offset 100               one partition, by offset
  evident read --all --from-sequence 5000                    every topic, in commit order

A read pages through to the end (or --limit) and prints one table. --json prints one JSON array of
the events as the server gives them (with topic, key, partition, offset, version and sequence), and
--jsonl one event per line as the pages arrive, which suits very long reads. On a terminal, a
progress bar on stderr shows reads that need more than one page."
)]
pub struct ReadArgs {
    #[command(flatten)]
    pub(super) client: ClientOptions,
    /// The topic to read (not with --all).
    #[arg(required_unless_present = "all")]
    topic: Option<String>,
    /// Read this stream (the entity's key) of the topic, in version order.
    key: Option<String>,
    /// Read this partition of the topic, in offset order.
    #[arg(long, short = 'p', value_name = "P", requires = "topic")]
    partition: Option<u32>,
    /// Read every topic's events in store-wide commit order (internal topics excluded).
    #[arg(long, conflicts_with = "topic")]
    all: bool,

    /// Stream: start at this version (forward: the default is 0; backward: the last event).
    #[arg(
        long,
        value_name = "N",
        requires = "key",
        conflicts_with_all = ["partition", "all"],
        help_heading = "Stream options",
    )]
    from_version: Option<u64>,
    /// Stream: read from newest to oldest.
    #[arg(long, requires = "key", conflicts_with_all = ["partition", "all"], help_heading = "Stream options")]
    backward: bool,
    /// Stream: read the stream as it was when this version was its last event.
    #[arg(
        long,
        value_name = "N",
        requires = "key",
        conflicts_with_all = ["partition", "all"],
        help_heading = "Stream options",
    )]
    as_of_version: Option<u64>,
    /// Stream: read the stream as it was at this time (RFC 3339, or milliseconds since the epoch).
    #[arg(
        long,
        value_name = "TIME",
        requires = "key",
        conflicts_with_all = ["partition", "all"],
        help_heading = "Stream options",
    )]
    as_of_time: Option<String>,

    /// Partition: start at this offset (default: 0, or the log start when older records are gone).
    #[arg(
        long,
        value_name = "N",
        requires = "partition",
        conflicts_with_all = ["key", "all"],
        help_heading = "Partition options"
    )]
    offset: Option<u64>,
    /// Partition: start at the first record at or after this time (RFC 3339, or ms since the epoch).
    #[arg(
        long,
        value_name = "TIME",
        requires = "partition",
        conflicts_with_all = ["offset", "key", "all"],
        help_heading = "Partition options"
    )]
    timestamp: Option<String>,

    /// Everything: start at this store-wide sequence (default 0).
    #[arg(
        long,
        value_name = "N",
        requires = "all",
        conflicts_with_all = ["key", "partition"],
        help_heading = "--all options",
    )]
    from_sequence: Option<u64>,

    /// Stop after N events (default: read to the end).
    #[arg(long, short = 'n', value_name = "N")]
    limit: Option<u64>,
    /// Events per request (1 to 10000).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(1..=PAGE_SIZE_MAX as i64),
    )]
    page_size: u32,
    /// Print one JSON event per line as pages arrive (JSON Lines), instead of one JSON array.
    #[arg(long, conflicts_with = "json")]
    jsonl: bool,
}

/// What a read pages through, with the parameters that stay the same from page to page.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// `GET /v1/topics/{topic}/streams/{key}`, paged by version.
    Stream { topic: String, key: String, backward: bool, as_of_version: Option<u64>, as_of_time: Option<String> },
    /// `GET /v1/topics/{topic}/partitions/{p}/records`, paged by offset; `timestamp` only finds
    /// the first page's start.
    Partition { topic: String, partition: u32, timestamp: Option<String> },
    /// `GET /v1/all`, paged by sequence.
    All,
}

/// One page of a read, as far as paging cares.
#[derive(Debug, Clone, PartialEq)]
struct Page {
    /// The events, in read order.
    events: Vec<Value>,
    /// Where the next page starts; `None` at the end.
    next: Option<u64>,
    /// How many events are left from this page's first event on, when the reply tells
    /// (`current_version`, `high_watermark`); it sizes the progress bar.
    remaining_hint: Option<u64>,
}

impl Source {
    /// The path and query of the page starting at `start` (`None`: the server's default or the
    /// first page's own start parameter) with at most `limit` events.
    fn request(
        &self,
        start: Option<u64>,
        first: bool,
        limit: u64,
    ) -> (Vec<String>, Vec<(&'static str, Option<String>)>) {
        let limit = Some(limit.to_string());
        let start = start.map(|s| s.to_string());
        match self {
            Source::Stream { topic, key, backward, as_of_version, as_of_time } => (
                vec!["v1".into(), "topics".into(), topic.clone(), "streams".into(), key.clone()],
                vec![
                    ("from_version", start),
                    ("limit", limit),
                    ("direction", backward.then(|| "backward".to_owned())),
                    ("as_of_version", as_of_version.map(|v| v.to_string())),
                    ("as_of_time", as_of_time.clone()),
                ],
            ),
            Source::Partition { topic, partition, timestamp } => (
                vec![
                    "v1".into(),
                    "topics".into(),
                    topic.clone(),
                    "partitions".into(),
                    partition.to_string(),
                    "records".into(),
                ],
                vec![
                    ("offset", start),
                    // Only the first page looks up a time; later pages continue from next_offset.
                    ("timestamp", if first { timestamp.clone() } else { None }),
                    ("limit", limit),
                ],
            ),
            Source::All => (vec!["v1".into(), "all".into()], vec![("from_sequence", start), ("limit", limit)]),
        }
    }

    /// The field of each event that the cursor counts in.
    fn position_field(&self) -> &'static str {
        match self {
            Source::Stream { .. } => "version",
            Source::Partition { .. } => "offset",
            Source::All => "sequence",
        }
    }

    /// Reads the paging facts out of a reply: the page as `evident-api` defines it, its events
    /// kept as the server's JSON (printed as they came, extension attributes in order).
    fn page(&self, reply: &Value) -> anyhow::Result<Page> {
        let position = self.position_field();
        let first_position = |events: &[Value]| events.first().and_then(|e| e.get(position)).and_then(Value::as_u64);
        match self {
            Source::Stream { backward, as_of_version, .. } => {
                let page: StreamPage<Value> = client::decode(reply, "a page of a stream")?;
                let first = first_position(&page.events);
                let remaining_hint = if *backward {
                    first.map(|f| f + 1)
                } else {
                    let last = as_of_version.map_or(page.current_version, |a| a.min(page.current_version));
                    first.map(|first| (last + 1).saturating_sub(first))
                };
                Ok(Page { events: page.events, next: page.next_version, remaining_hint })
            }
            Source::Partition { .. } => {
                let page: PartitionPage<Value> = client::decode(reply, "a page of a partition")?;
                let first = first_position(&page.records);
                // A partition's cursor may stay defined at its end; at the high watermark there is
                // nothing more to read now, so the read is complete.
                let next = page.next_offset.filter(|&n| n < page.high_watermark);
                let remaining_hint = first.map(|first| page.high_watermark.saturating_sub(first));
                Ok(Page { events: page.records, next, remaining_hint })
            }
            Source::All => {
                let page: AllPage<Value> = client::decode(reply, "a page of everything")?;
                Ok(Page { events: page.events, next: page.next_sequence, remaining_hint: None })
            }
        }
    }

    /// Checks that the cursor moves past the page just read, so a misbehaving server cannot make
    /// the client loop forever.
    fn check_advances(&self, page: &Page) -> anyhow::Result<()> {
        let (Some(next), Some(last)) =
            (page.next, page.events.last().and_then(|e| e.get(self.position_field())).and_then(Value::as_u64))
        else {
            return Ok(());
        };
        let backward = matches!(self, Source::Stream { backward: true, .. });
        let advances = if backward { next < last } else { next > last };
        if !advances {
            anyhow::bail!(
                "the server's paging cursor does not advance ({} {last} is followed by {next}); stopping",
                self.position_field()
            );
        }
        Ok(())
    }
}

/// Where the read's events go: printed at once (`--jsonl`), or kept for one table or JSON array.
enum Sink {
    /// Print each event as one JSON line as soon as its page arrives.
    Lines,
    /// Keep the events for the end.
    Collect(Vec<Value>),
}

/// Runs `evident read`.
pub fn run(args: ReadArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client.server)?;
    let (source, start, columns) = source_of(&args);
    let mut sink = if args.jsonl { Sink::Lines } else { Sink::Collect(Vec::new()) };
    // A bar redrawn between lines printed on the same terminal would garble them.
    let progress = io::stderr().is_terminal() && !(args.jsonl && io::stdout().is_terminal());
    read_pages(&client, &source, start, args.limit, args.page_size, progress, &mut |events| {
        match &mut sink {
            Sink::Lines => events.iter().try_for_each(output::print_json_line)?,
            Sink::Collect(all) => all.extend(events.iter().cloned()),
        }
        Ok(())
    })?;
    let Sink::Collect(events) = sink else { return Ok(()) };
    if args.client.json {
        return Ok(output::print_json(&Value::Array(events))?);
    }
    if events.is_empty() {
        return Ok(output::print_text("No events.")?);
    }
    Ok(output::print_table(&output::events_table(&events, columns))?)
}

/// The source, the first page's start and the table layout the arguments ask for.
fn source_of(args: &ReadArgs) -> (Source, Option<u64>, EventColumns) {
    let topic = args.topic.clone().unwrap_or_default();
    if args.all {
        (Source::All, args.from_sequence, EventColumns::All)
    } else if let Some(partition) = args.partition {
        (
            Source::Partition { topic, partition, timestamp: args.timestamp.clone() },
            args.offset,
            EventColumns::Partition,
        )
    } else {
        // clap's "what" group makes a key present when neither --all nor --partition is.
        let source = Source::Stream {
            topic,
            key: args.key.clone().unwrap_or_default(),
            backward: args.backward,
            as_of_version: args.as_of_version,
            as_of_time: args.as_of_time.clone(),
        };
        (source, args.from_version, EventColumns::Stream)
    }
}

/// Fetches pages from `start` until the end or `limit` events, handing each page's events to
/// `emit`. With `show_progress`, a progress bar appears on stderr once a second page is needed.
fn read_pages(
    client: &Client,
    source: &Source,
    start: Option<u64>,
    limit: Option<u64>,
    page_size: u32,
    show_progress: bool,
    emit: &mut dyn FnMut(&[Value]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let limit = limit.unwrap_or(u64::MAX);
    let mut start = start;
    let mut read = 0u64;
    let mut progress: Option<ProgressBar> = None;
    let mut first = true;
    while read < limit {
        let (segments, query) = source.request(start, first, (limit - read).min(u64::from(page_size)));
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let reply = client.get(client.url(&segments, &query)?)?;
        let page = source.page(&reply)?;
        source.check_advances(&page)?;
        let take = page.events.len().min(usize::try_from(limit - read).unwrap_or(usize::MAX));
        emit(&page.events[..take])?;
        read += take as u64;
        if show_progress && first && page.next.is_some() && read < limit {
            progress = Some(progress_bar(page.remaining_hint.map(|r| r.min(limit))));
        }
        if let Some(bar) = &progress {
            bar.set_position(read);
        }
        first = false;
        // A page of everything can be empty yet not the end: its records may all have been
        // internal ones, which the server leaves out; its cursor then still moves forward.
        let empty_but_moves = matches!(source, Source::All) && page.next.is_some_and(|n| n > start.unwrap_or(0));
        match page.next {
            Some(next) if !page.events.is_empty() || empty_but_moves => start = Some(next),
            _ => break,
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(())
}

/// A progress bar on stderr, sized when the total is known, else a counter.
fn progress_bar(total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{spinner} reading {human_pos}/{human_len} events [{bar:30}] eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} reading {human_pos} events ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::*;

    /// A stand-in top-level command, to parse `read` arguments as the binary does.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        read: ReadArgs,
    }

    fn parse(args: &[&str]) -> Result<(Source, Option<u64>), clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once(&"read").chain(args))?;
        let (source, start, _) = source_of(&cli.read);
        Ok((source, start))
    }

    #[test]
    fn arguments_pick_one_source() {
        let (source, start) = parse(&["bank", "acc-1", "--backward", "--from-version", "9"]).unwrap();
        let expected = Source::Stream {
            topic: "bank".into(),
            key: "acc-1".into(),
            backward: true,
            as_of_version: None,
            as_of_time: None,
        };
        assert_eq!((source, start), (expected, Some(9)));
        let (source, start) = parse(&["bank", "--partition", "2", "--timestamp", "1700000000000"]).unwrap();
        assert_eq!(
            (source, start),
            (Source::Partition { topic: "bank".into(), partition: 2, timestamp: Some("1700000000000".into()) }, None)
        );
        assert_eq!(parse(&["--all", "--from-sequence", "5"]).unwrap(), (Source::All, Some(5)));
        for bad in [
            &[][..],
            &["bank"],
            &["bank", "k", "--partition", "0"],
            &["bank", "--all"],
            &["bank", "--partition", "0", "--from-version", "3"],
            &["bank", "--partition", "0", "--backward"],
            &["bank", "k", "--offset", "3"],
            &["--all", "--offset", "3"],
            &["--all", "--as-of-version", "3"],
            &["bank", "k", "--from-sequence", "3"],
            &["bank", "--partition", "0", "--offset", "1", "--timestamp", "1"],
            &["--all", "--json", "--jsonl"],
            &["--all", "--page-size", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    fn stream(backward: bool) -> Source {
        Source::Stream { topic: "bank".into(), key: "acc 1".into(), backward, as_of_version: None, as_of_time: None }
    }

    /// A stream page with these events (only their positions matter here).
    fn stream_reply(current_version: u64, events: Value, next_version: Value) -> Value {
        json!({"topic": "bank", "key": "acc 1", "partition": 0, "current_version": current_version,
            "events": events, "next_version": next_version})
    }

    #[test]
    fn stream_pages() {
        let source = stream(false);
        let (path, query) = source.request(Some(100), false, 50);
        assert_eq!(path, ["v1", "topics", "bank", "streams", "acc 1"]);
        assert_eq!(query[0], ("from_version", Some("100".into())));
        assert_eq!(query[1], ("limit", Some("50".into())));
        assert_eq!(query[2], ("direction", None));
        let reply = stream_reply(249, json!([{"version": 100}, {"version": 149}]), json!(150));
        let page = source.page(&reply).unwrap();
        assert_eq!((page.next, page.remaining_hint), (Some(150), Some(150)));
        source.check_advances(&page).unwrap();
        let end = source.page(&stream_reply(249, json!([]), Value::Null)).unwrap();
        assert_eq!(end.next, None);
    }

    #[test]
    fn backward_stream_pages() {
        let source = stream(true);
        assert_eq!(source.request(None, true, 10).1[2], ("direction", Some("backward".into())));
        let page = source.page(&stream_reply(9, json!([{"version": 9}, {"version": 8}]), json!(7))).unwrap();
        assert_eq!(page.remaining_hint, Some(10));
        source.check_advances(&page).unwrap();
        let stuck = source.page(&stream_reply(9, json!([{"version": 9}, {"version": 8}]), json!(9))).unwrap();
        assert!(source.check_advances(&stuck).is_err());
    }

    #[test]
    fn partition_pages_stop_at_the_high_watermark() {
        let source =
            Source::Partition { topic: "bank".into(), partition: 2, timestamp: Some("2026-01-01T00:00:00Z".into()) };
        let (path, first_query) = source.request(None, true, 10);
        assert_eq!(path, ["v1", "topics", "bank", "partitions", "2", "records"]);
        assert_eq!(first_query[1], ("timestamp", Some("2026-01-01T00:00:00Z".into())));
        assert_eq!(source.request(Some(5), false, 10).1[1], ("timestamp", None));
        let reply = json!({"topic": "bank", "partition": 2, "log_start_offset": 0, "high_watermark": 12,
            "records": [{"offset": 10}, {"offset": 11}], "next_offset": 12});
        let page = source.page(&reply).unwrap();
        assert_eq!((page.next, page.remaining_hint), (None, Some(2)));
        assert!(source.page(&json!({"events": []})).is_err());
    }

    #[test]
    fn everything_pages() {
        let reply = |next| json!({"events": [{"sequence": 3}], "next_sequence": next, "head_sequence": 9});
        let page = Source::All.page(&reply(4)).unwrap();
        assert_eq!((page.next, page.remaining_hint), (Some(4), None));
        let stuck = Source::All.page(&reply(3)).unwrap();
        assert!(Source::All.check_advances(&stuck).is_err());
    }
}
