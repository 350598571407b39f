//! Goal (issue 11, reliability probe row 7): against the real binary, `/health` tells the
//! truth about a damaged store. Before, a copy of a data directory with a flipped byte started,
//! reads of the damaged stream failed with `500 corrupted`, and `/health` said `ok`; a torn tail
//! cut at start-up was logged nowhere. Now the damaged read still fails (the damage is never
//! served) and the rest is served, `/health` answers `200 degraded` with the damaged position,
//! the metrics count the refused reads, and a cut tail is logged at `warn` on stderr and shown
//! under `last_recovery`.
//!
//! Method: a server writes two streams and stops cleanly; one byte inside an event of one
//! stream is flipped in the journal's segment file; a new server starts on the damaged copy.
//! For the torn tail, a server under `--fsync never` (so no frame proves the ones before it
//! durable) is killed with SIGKILL after its appends and a byte of a late event is flipped.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_error, Server};
use serde_json::{json, Value};

/// The journal's segment files under `dir/data`.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("data").join("journal"))
        .expect("journal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "journal"))
        .collect();
    files.sort();
    files
}

/// Flips one byte inside the first occurrence of `needle` in the journal; returns the file.
fn flip_inside(dir: &Path, needle: &str) -> PathBuf {
    for file in segments(dir) {
        let mut bytes = std::fs::read(&file).expect("read segment");
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle.as_bytes()) {
            bytes[at + needle.len() / 2] ^= 0x20;
            std::fs::write(&file, &bytes).expect("write segment");
            return file;
        }
    }
    panic!("{needle} not found in the journal");
}

fn append(server: &Server, stream: &str, marker: &str) {
    let body = json!({"events": [{"type": "Noted", "data": {"marker": marker}}]});
    server.post_expect(&format!("/v1/topics/accounts/streams/{stream}"), &body, 201);
}

#[test]
fn a_damaged_region_is_refused_and_health_says_degraded_with_where() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut server = Server::start_in(dir.path());
        server.create_topic("accounts", 1);
        append(&server, "intact", "intact-one");
        append(&server, "damaged", "DAMAGED-HERE");
        append(&server, "intact", "intact-two");
        let health = server.get_ok("/health");
        assert_eq!(health["status"], "ok", "{health}");
        assert!(health.get("reasons").is_none() && health.get("damage").is_none(), "{health}");
        let (code, out, err) = server.sigterm();
        assert_eq!(code, Some(0), "{out}\n{err}");
    }
    let file = flip_inside(dir.path(), "DAMAGED-HERE");

    let server = Server::start_in(dir.path());
    let (status, body) = server.get("/v1/topics/accounts/streams/damaged");
    assert_eq!(status, 500, "{body}");
    assert_error(&body, "corrupted");
    let intact = server.get_ok("/v1/topics/accounts/streams/intact");
    assert_eq!(intact["events"].as_array().map(Vec::len), Some(2), "{intact}");

    let (status, health) = server.get("/health");
    assert_eq!(status, 200, "degraded still serves: {health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["reasons"][0]["code"], "damaged", "{health}");
    let message = health["reasons"][0]["message"].as_str().expect("message");
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert_eq!(health["damage"]["reads"], 1, "{health}");
    let position = &health["damage"]["positions"][0];
    assert_eq!(position["file"], json!(file.display().to_string()), "{health}");
    assert_eq!(position["topic"], "accounts");
    assert_eq!(position["partition"], 0);
    assert_eq!(position["offset"], 1, "the second event of the partition");
    assert!(position["byte"].as_u64().is_some_and(|b| b > 0), "{position}");
    assert!(position["first_seen_ms"].as_i64().is_some_and(|t| t > 1_700_000_000_000), "{position}");
    // Still an event store: the fields of a healthy reply are there, and appends work.
    assert!(health["next_sequence"].is_u64() && health["fsync"] == "always", "{health}");
    append(&server, "intact", "after-the-damage");

    let metrics = server.metrics();
    assert_eq!(common::metric_value(&metrics, "evident_log_damaged_reads_total"), Some(1.0), "{metrics}");
    assert_eq!(common::metric_value(&metrics, "evident_log_damaged_positions"), Some(1.0), "{metrics}");
    assert_eq!(common::metric_value(&metrics, "evident_log_degraded"), Some(1.0), "{metrics}");
    assert_eq!(common::metric_value(&metrics, "evident_log_poisoned"), Some(0.0), "{metrics}");
    // The damage was logged once, at error, when first met.
    assert!(server.stderr().contains("a read found damaged bytes"), "{}", server.stderr());
}

#[test]
fn a_torn_tail_cut_at_start_is_logged_at_warn_and_shown_by_health() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut server = Server::start_in_with(dir.path(), &["--fsync", "never"]);
        server.create_topic("accounts", 1);
        for i in 0..10 {
            append(&server, "k", &format!("ROUND-{i}"));
        }
        server.kill9();
    }
    let file = flip_inside(dir.path(), "ROUND-4");

    let server = Server::start_in(dir.path());
    let events: Value = server.get_ok("/v1/topics/accounts/streams/k");
    assert_eq!(events["events"].as_array().map(Vec::len), Some(4), "the damaged event and those after it are cut");
    let health = server.get_ok("/health");
    assert_eq!(health["status"], "ok", "a cut is reported, not a degradation: {health}");
    let cut = &health["last_recovery"]["truncation"];
    assert_eq!(cut["file"], json!(file.display().to_string()), "{health}");
    assert_eq!(cut["intact_frames_cut"], 5, "{health}");
    assert!(cut["intact_bytes_cut"].as_u64().is_some_and(|b| b > 5 * 40), "{health}");
    let (from, to, bytes) = (cut["from_byte"].as_u64(), cut["to_byte"].as_u64(), cut["bytes"].as_u64());
    assert!(from.zip(to).zip(bytes).is_some_and(|((f, t), b)| f < t && b == t - f), "{cut}");
    let metrics = server.metrics();
    assert_eq!(common::metric_value(&metrics, "evident_log_recovery_truncated_bytes"), bytes.map(|b| b as f64));

    // (The server colours its log lines even into a pipe: compare the text without the codes.)
    let stderr = strip_ansi(&server.stderr());
    let warn = stderr.lines().find(|l| l.contains("torn tail")).unwrap_or_else(|| panic!("no warning:\n{stderr}"));
    assert!(warn.contains("WARN") && warn.contains("intact_frames_cut=5"), "{warn}");
    assert!(warn.contains(&format!("from_byte={}", from.unwrap_or_default())), "{warn}");
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
