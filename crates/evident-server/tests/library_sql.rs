//! The library declares and queries SQL views (`Backend::sql`), the same on both backends: the
//! embedded log in this process and an `evident serve` over HTTP. Seed 000's statement over
//! events appended through the library; a pull query that waits for the last append
//! (`min_sequence`) equals a fold of the events; errors come back as the library's.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::Server;
use evident::backend::{EmbeddedBackend, HttpBackend};
use evident::blocking::wait;
use evident::{Backend, Error, TopicSpec};
use evident_core::{EventData, ExpectedVersion};
use serde_json::json;

fn exercise(backend: Arc<dyn Backend>, what: &str) {
    wait(backend.ensure_topic("order-events", TopicSpec { partitions: 2, compacted: false })).expect("topic");
    let mut fold: BTreeMap<String, i64> = BTreeMap::new();
    let mut last = None;
    for i in 0..300i64 {
        let order = format!("order-{}", i % 7);
        let price = 1 + (i * 3) % 20;
        *fold.entry(order.clone()).or_default() += price;
        let data = json!({"orderId": order, "item_price": price}).to_string();
        let event = EventData::json(format!("e-{i}"), "ItemAdded", data.into_bytes());
        let appended = wait(backend.append("order-events", &format!("c-{}", i % 5), ExpectedVersion::Any, &[event]))
            .expect("append");
        last = Some(appended.last_sequence);
    }
    let created = wait(backend.sql(
        "CREATE TABLE order_summary AS SELECT orderId, SUM(item_price) AS total FROM order-events GROUP BY orderId;",
        None,
    ))
    .expect("create");
    assert!(created.message.is_some_and(|m| m.contains("order_summary")), "{what}");
    // Read-your-writes: waits until the view applied the last append.
    let answer = wait(backend.sql("SELECT orderId, total FROM order_summary ORDER BY orderId", last)).expect("pull");
    assert_eq!(
        answer.columns,
        [("orderId".to_string(), "STRING".to_string()), ("total".into(), "BIGINT".into())],
        "{what}"
    );
    let got: BTreeMap<String, i64> = answer
        .rows
        .iter()
        .map(|r| (r[0].as_str().expect("orderId").to_string(), r[1].as_i64().expect("total")))
        .collect();
    assert_eq!(got, fold, "{what}");
    match wait(backend.sql("SELECT nope FROM order_summary", None)) {
        Err(Error::Rejected(m)) => assert!(m.contains("nope"), "{what}: {m}"),
        other => panic!("{what}: {other:?}"),
    }
    let dropped = wait(backend.sql("DROP TABLE order_summary", None)).expect("drop");
    assert!(dropped.message.is_some(), "{what}");
}

#[test]
fn the_library_declares_and_queries_views_on_both_backends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded: Arc<dyn Backend> = Arc::new(EmbeddedBackend::open(dir.path()).expect("open"));
    exercise(embedded, "embedded");
    let server = Server::start();
    let http: Arc<dyn Backend> = Arc::new(HttpBackend::new(server.base()).expect("http backend"));
    exercise(http, "http");
}
