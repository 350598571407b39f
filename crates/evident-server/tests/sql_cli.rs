//! End-to-end tests of `evident sql` against a real `evident serve`: seed 000's statement run
//! verbatim with `-e` over order events appended over HTTP, the view read back as a table and as
//! `--json` (totals equal a fold computed here), a refused statement's exit code and message,
//! stopping at the first failure or going on, `-f FILE` with comments and `;` inside strings,
//! statements piped on stdin, and a push query (`EMIT CHANGES`) that prints the two changes made
//! after it started and exits at `--limit 2`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Server, PATIENCE};
use serde_json::{json, Value};

/// Seed 000's statement, exactly as the seed writes it (hyphenated topic unquoted).
const SEED: &str =
    "CREATE TABLE order_summary AS SELECT orderId, SUM(item_price) AS total FROM order-events GROUP BY orderId;";

/// The items added, as (order, price): several per order, so the totals are sums.
const ITEMS: [(&str, i64); 7] =
    [("order-1", 12), ("order-2", 5), ("order-1", 30), ("order-3", 7), ("order-2", 1), ("order-1", 8), ("order-4", 0)];

/// Appends an `ItemAdded` event (the seed's payload) over HTTP; returns its store-wide sequence.
fn add_item(server: &Server, order: &str, price: i64, n: usize) -> u64 {
    let data = json!({
        "eventType": "ItemAdded", "orderId": order, "customerId": "c-3", "item": format!("i-{n}"), "item_price": price
    });
    let reply = server.append("order-events", order, &json!({"type": "ItemAdded", "data": data}));
    reply["events"][0]["sequence"].as_u64().unwrap_or_else(|| panic!("no sequence in {reply}"))
}

/// The totals by order, folded here from the items.
fn fold(items: &[(&str, i64)]) -> BTreeMap<String, f64> {
    let mut totals = BTreeMap::new();
    for (order, price) in items {
        *totals.entry((*order).to_owned()).or_insert(0.0) += *price as f64;
    }
    totals
}

/// The totals of one order only.
fn only(totals: &BTreeMap<String, f64>, order: &str) -> BTreeMap<String, f64> {
    totals.iter().filter(|(k, _)| *k == order).map(|(k, v)| (k.clone(), *v)).collect()
}

/// Runs `evident sql ARGS`, which must succeed; returns its stdout.
fn sql_ok(server: &Server, args: &[&str]) -> String {
    let mut argv = vec!["sql"];
    argv.extend_from_slice(args);
    let (code, out, err) = server.cli(&argv);
    assert_eq!(code, 0, "evident {}\n--- stdout\n{out}\n--- stderr\n{err}", argv.join(" "));
    out
}

/// Each stdout line parsed as JSON (`--json` prints one object per statement, one a line).
fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n{out}")))
        .collect()
}

/// The totals of a query reply `{"columns", "rows"}` whose columns are orderId and total.
fn totals_of(reply: &Value) -> BTreeMap<String, f64> {
    let names: Vec<&str> =
        reply["columns"].as_array().expect("columns").iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["orderId", "total"], "{reply}");
    reply["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| (row[0].as_str().expect("orderId").to_owned(), row[1].as_f64().expect("total")))
        .collect()
}

/// The totals in a table printed by `evident sql`: the header, one row per order, the count.
fn totals_of_table(out: &str) -> BTreeMap<String, f64> {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first().map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["orderId", "total"]),
        "{out}"
    );
    let rows = &lines[1..lines.len() - 1];
    assert_eq!(lines.last(), Some(&format!("({} rows)", rows.len()).as_str()), "{out}");
    rows.iter()
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cells.len(), 2, "{out}");
            (cells[0].to_owned(), cells[1].parse::<f64>().unwrap_or_else(|e| panic!("total {} ({e}): {out}", cells[1])))
        })
        .collect()
}

/// The seed's statement from `-e`, the view as a table and as JSON, refusals, `-f` and stdin.
#[test]
fn seed_statement_pull_queries_errors_files_and_stdin() {
    let server = Server::start();
    server.create_topic("order-events", 3);
    let mut last = 0;
    for (n, (order, price)) in ITEMS.iter().enumerate() {
        last = add_item(&server, order, *price, n);
    }
    let expected = fold(&ITEMS);

    // The seed's statement, verbatim: the server's message on stdout.
    let created = sql_ok(&server, &["-e", SEED]);
    assert!(!created.trim().is_empty(), "CREATE TABLE printed nothing");
    assert!(sql_ok(&server, &["-e", "SHOW TABLES"]).contains("order_summary"));

    // A pull query as a table, once the view has applied the last append (read your writes).
    let last = last.to_string();
    let query = "SELECT orderId, total FROM order_summary";
    let table = sql_ok(&server, &["--min-sequence", &last, "-e", query]);
    assert_eq!(totals_of_table(&table), expected, "{table}");
    // The same as JSON: one object, the server's reply.
    let replies = json_lines(&sql_ok(&server, &["--json", "-e", query]));
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(totals_of(&replies[0]), expected);
    // Several statements in one -e, and -e repeated: one JSON line each, in order.
    let replies = json_lines(&sql_ok(
        &server,
        &[
            "--json",
            "-e",
            "SELECT orderId, total FROM order_summary WHERE orderId = 'order-1'; SHOW TABLES",
            "-e",
            query,
        ],
    ));
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_eq!(totals_of(&replies[0]), only(&expected, "order-1"));
    assert_eq!(totals_of(&replies[2]), expected);

    // A syntax error: exit 1, the server's message and code on stderr.
    let (code, out, err) = server.cli(&["sql", "-e", "SELEC orderId FROM order_summary"]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.starts_with("evident: ") && err.contains("sql_syntax") && err.contains("HTTP 400"), "{err}");
    // Under --json, the server's error document with its status.
    let (code, _, err) = server.cli(&["sql", "--json", "-e", "DESCRIBE no_such_view"]);
    assert_eq!(code, 1, "{err}");
    let document: Value = serde_json::from_str(err.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {err}"));
    assert_eq!((&document["error"]["code"], &document["error"]["status"]), (&json!("unknown_view"), &json!(404)));
    // The first failure stops the run, unless --continue-on-error (the exit code still tells).
    let statements = "SHOW TABLES; SELEC 1; SHOW TABLES";
    let (code, out, err) = server.cli(&["sql", "--json", "-e", statements]);
    assert_eq!((code, json_lines(&out).len()), (1, 1), "{out}\n{err}");
    // Without --json, the message says which statement failed.
    let (code, _, err) = server.cli(&["sql", "-e", statements]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("evident: statement 2: ") && err.contains("sql_syntax"), "{err}");
    let (code, out, err) = server.cli(&["sql", "--json", "--continue-on-error", "-e", statements]);
    assert_eq!((code, json_lines(&out).len()), (1, 2), "{out}\n{err}");
    // The same statement twice: the second is refused, and the view is unaffected.
    let (code, _, err) = server.cli(&["sql", "-e", SEED]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("view_exists"), "{err}");
    assert_eq!(totals_of(&json_lines(&sql_ok(&server, &["--json", "-e", query]))[0]), expected);

    // -f FILE: comments, a `;` inside a string and inside a comment, a statement over lines.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("queries.sql");
    let script = "-- the totals; all of them\nSELECT orderId, total\n  FROM order_summary;\n\n\
                  /* one order; by key */ SELECT orderId, total FROM order_summary\n  WHERE orderId = 'order-2' OR orderId = 'a;b';\n";
    std::fs::write(&file, script).expect("write the script");
    let file = file.to_str().expect("a UTF-8 path");
    let replies = json_lines(&sql_ok(&server, &["--json", "-f", file]));
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(totals_of(&replies[0]), expected);
    assert_eq!(totals_of(&replies[1]), only(&expected, "order-2"));
    // A failure in a file names the file and the line where its statement starts.
    std::fs::write(dir.path().join("bad.sql"), "SHOW TABLES;\n\n  SELEC 1;\n").expect("write");
    let (code, _, err) = server.cli(&["sql", "-f", dir.path().join("bad.sql").to_str().expect("path")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("bad.sql line 3"), "{err}");

    // Statements piped on stdin (not a terminal: no prompts), the last one without `;`.
    let mut cmd = common::command(dir.path());
    cmd.args(["sql", "--server", &server.base()]);
    let run = common::run_with_limit(&mut cmd, Some(format!("SHOW TABLES;\n{query}").as_bytes()), PATIENCE);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stdout.contains("evident>"), "{}", run.stdout);
    let tail = run.stdout.split_once("(1 row)\n").map_or("", |(_, rest)| rest);
    assert_eq!(totals_of_table(tail), expected, "{}", run.stdout);
    // `-f -` reads stdin as well, --json here.
    let mut cmd = common::command(dir.path());
    cmd.args(["sql", "-f", "-", "--json", "--server", &server.base()]);
    let run = common::run_with_limit(&mut cmd, Some(format!("{query};\n").as_bytes()), PATIENCE);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(totals_of(&json_lines(&run.stdout)[0]), expected);
}

/// The next line the push query prints, as JSON; fails after [`PATIENCE`].
fn next_line(push: &mut common::Piped) -> Value {
    let line = push.lines.recv_timeout(PATIENCE).unwrap_or_else(|e| {
        let _ = push.child.kill();
        panic!("the push query printed no line ({e})")
    });
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// A push query prints its header, then the two changes made after it started, and exits at
/// `--limit 2`.
#[test]
fn push_query_prints_changes_until_its_limit() {
    let server = Server::start();
    server.create_topic("order-events", 3);
    add_item(&server, "order-1", 12, 0);
    sql_ok(&server, &["-e", SEED]);
    let mut cmd = common::command(&std::env::temp_dir());
    cmd.args([
        "sql",
        "--json",
        "--limit",
        "2",
        "-e",
        "SELECT orderId, total FROM order_summary WHERE orderId = 'order-9' EMIT CHANGES",
        "--server",
        &server.base(),
    ]);
    let mut push = common::spawn_piped(&mut cmd, "evident sql (push query)");
    let header = next_line(&mut push);
    let names: Vec<&str> =
        header["columns"].as_array().expect("columns").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["orderId", "total"], "{header}");
    // Two changes after the query started.
    add_item(&server, "order-9", 4, 1);
    let first = next_line(&mut push);
    add_item(&server, "order-9", 6, 2);
    let second = next_line(&mut push);
    for (change, total) in [(&first, 4.0), (&second, 10.0)] {
        assert_eq!(change["op"], "upsert", "{change}");
        assert_eq!((change["row"][0].as_str(), change["row"][1].as_f64()), (Some("order-9"), Some(total)), "{change}");
    }
    let status = common::wait_exit(&mut push.child, "evident sql --limit 2");
    let err = push.stderr.join().expect("stderr");
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(push.lines.recv_timeout(Duration::from_millis(100)).is_err(), "nothing after the limit");
}
