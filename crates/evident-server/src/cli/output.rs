//! How the client commands print: JSON documents for scripts, and plain, borderless tables and lines
//! for people (grep- and awk-friendly, like `kafka-consumer-groups`). Values come from the server as
//! JSON and are shown as they are; a field the server left out shows as `-` rather than failing, so
//! the client keeps working while the server grows.

use std::io::{self, Write};

use comfy_table::{presets, ContentArrangement, Table};
use serde_json::Value;

/// The longest payload (`data`) a table cell or a tail line shows before it is cut with `…`;
/// `--json` always prints it whole.
pub const DATA_WIDTH_MAX: usize = 60;

/// The longest stream key a table cell shows before it is cut.
const KEY_WIDTH_MAX: usize = 40;

/// Prints one JSON document, pretty-printed, on stdout.
pub fn print_json(value: &Value) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()
}

/// Prints one JSON document on one line of stdout and flushes it, so a reader of the pipe sees
/// it at once (JSON Lines, for `--jsonl` and `tail --json`).
pub fn print_json_line(value: &Value) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    out.flush()
}

/// Prints lines of text on stdout.
pub fn print_text(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// A borderless table with these column headers; columns are separated by two spaces and never
/// wrapped, so each row stays one line whatever the terminal's width.
pub fn table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_content_arrangement(ContentArrangement::Disabled).set_header(headers);
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// Renders a table without trailing spaces.
pub fn render_table(table: &Table) -> String {
    table.trim_fmt()
}

/// Prints a table on stdout.
pub fn print_table(table: &Table) -> io::Result<()> {
    print_text(&render_table(table))
}

/// A JSON value as a table cell: strings without quotes, absent or `null` as `-`, anything else
/// as compact JSON.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A text field of a typed reply for a table cell: `-` when absent, as [`cell`] shows `null`.
pub fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

/// Cuts `text` to at most `chars_max` characters, marking the cut with `…`.
pub fn truncate(text: &str, chars_max: usize) -> String {
    if text.chars().count() <= chars_max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(chars_max.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// An event's payload as text: its JSON `data` compactly, or `base64:…` for a binary payload,
/// or `-` for none.
pub fn data_text(event: &Value) -> String {
    match (event.get("data"), event.get("data_base64")) {
        (Some(data), _) if !data.is_null() => data.to_string(),
        (_, Some(Value::String(b64))) => format!("base64:{b64}"),
        _ => "-".to_owned(),
    }
}

/// An event's stream key as text: the key, `base64:…` for a binary key, or `-` for none.
pub fn key_text(event: &Value) -> String {
    match (event.get("key"), event.get("key_base64")) {
        (Some(Value::String(key)), _) => key.clone(),
        (_, Some(Value::String(b64))) => format!("base64:{b64}"),
        _ => "-".to_owned(),
    }
}

/// Which positions an events table shows first: the one the read pages by leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventColumns {
    /// One stream: the version leads; topic and key are the same on every row, so not shown.
    Stream,
    /// One partition: the offset leads, and each record's key is shown.
    Partition,
    /// Everything, in commit order: the store-wide sequence leads, with topic and key.
    All,
}

impl EventColumns {
    /// The column headers.
    fn headers(self) -> &'static [&'static str] {
        match self {
            EventColumns::Stream => &["VERSION", "OFFSET", "SEQUENCE", "TIME", "TYPE", "ID", "DATA"],
            EventColumns::Partition => &["OFFSET", "KEY", "VERSION", "SEQUENCE", "TIME", "TYPE", "ID", "DATA"],
            EventColumns::All => {
                &["SEQUENCE", "TOPIC", "PARTITION", "OFFSET", "KEY", "VERSION", "TIME", "TYPE", "DATA"]
            }
        }
    }

    /// One event's row, in the order of [`EventColumns::headers`].
    fn row(self, event: &Value) -> Vec<String> {
        let field = |name: &str| cell(event.get(name));
        let data = truncate(&data_text(event), DATA_WIDTH_MAX);
        let key = truncate(&key_text(event), KEY_WIDTH_MAX);
        match self {
            EventColumns::Stream => vec![
                field("version"),
                field("offset"),
                field("sequence"),
                field("time"),
                field("type"),
                field("id"),
                data,
            ],
            EventColumns::Partition => vec![
                field("offset"),
                key,
                field("version"),
                field("sequence"),
                field("time"),
                field("type"),
                field("id"),
                data,
            ],
            EventColumns::All => vec![
                field("sequence"),
                field("topic"),
                field("partition"),
                field("offset"),
                key,
                field("version"),
                field("time"),
                field("type"),
                data,
            ],
        }
    }
}

/// A table of events (as the server returns them on read), one row each.
pub fn events_table(events: &[Value], columns: EventColumns) -> Table {
    let mut table = table(columns.headers());
    for event in events {
        table.add_row(columns.row(event));
    }
    table
}

/// One event as one line, for `tail`: time, `topic/key`, the positions that exist, type and
/// (cut) payload, e.g. `2026-11-22T10:00:00.123Z  bank/acc-1  v3  p0@12  #40  MoneyDeposited  {"amount":50}`.
pub fn event_line(event: &Value) -> String {
    let mut parts = vec![cell(event.get("time")), format!("{}/{}", cell(event.get("topic")), key_text(event))];
    if let Some(version) = event.get("version").filter(|v| !v.is_null()) {
        parts.push(format!("v{version}"));
    }
    parts.push(format!("p{}@{}", cell(event.get("partition")), cell(event.get("offset"))));
    parts.push(format!("#{}", cell(event.get("sequence"))));
    parts.push(cell(event.get("type")));
    parts.push(truncate(&data_text(event), DATA_WIDTH_MAX));
    parts.join("  ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deposited() -> Value {
        json!({
            "specversion": "1.0", "id": "e-1", "type": "MoneyDeposited", "source": "/teller/7",
            "time": "2026-11-22T10:00:00.123Z", "datacontenttype": "application/json",
            "data": {"amount": 50, "memo": "a long memo that will not fit in the data column of a table"},
            "topic": "bank", "key": "acc-1", "partition": 0, "offset": 12, "version": 3, "sequence": 40,
            "timestamp": "2026-11-22T10:00:00.123Z", "headers": {}
        })
    }

    #[test]
    fn stream_table() {
        let table = render_table(&events_table(&[deposited()], EventColumns::Stream));
        let expected = "\
VERSION  OFFSET  SEQUENCE  TIME                      TYPE            ID   DATA
3        12      40        2026-11-22T10:00:00.123Z  MoneyDeposited  e-1  \
{\"amount\":50,\"memo\":\"a long memo that will not fit in the d…";
        assert_eq!(table, expected);
    }

    #[test]
    fn all_table_with_a_record_without_cloudevents() {
        let record = json!({"topic": "raw", "key": null, "key_base64": "AAE=", "partition": 1, "offset": 0,
            "version": null, "sequence": 7, "time": "2026-11-22T10:00:00Z", "type": null, "data_base64": "/w=="});
        let table = render_table(&events_table(&[record], EventColumns::All));
        let expected = "\
SEQUENCE  TOPIC  PARTITION  OFFSET  KEY          VERSION  TIME                  TYPE  DATA
7         raw    1          0       base64:AAE=  -        2026-11-22T10:00:00Z  -     base64:/w==";
        assert_eq!(table, expected);
    }

    #[test]
    fn tail_line() {
        let mut event = deposited();
        event["data"] = json!({"amount": 50});
        assert_eq!(
            event_line(&event),
            "2026-11-22T10:00:00.123Z  bank/acc-1  v3  p0@12  #40  MoneyDeposited  {\"amount\":50}"
        );
    }

    #[test]
    fn cells_and_truncation() {
        assert_eq!(cell(None), "-");
        assert_eq!(cell(Some(&Value::Null)), "-");
        assert_eq!(cell(Some(&json!("x"))), "x");
        assert_eq!(cell(Some(&json!(5))), "5");
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo!", 5), "héll…");
        assert_eq!(data_text(&json!({})), "-");
    }
}
