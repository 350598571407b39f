//! The library's two examples, compiled unchanged from `crates/evident/examples/`, run against
//! a real `evident serve` over HTTP: the same application code as on the embedded log (each
//! example's own test runs it there) must produce the same results through the server.

mod common;

// The examples' `main`s are not called here; they test the library's `kafka` feature, which
// this crate does not declare.
#[allow(dead_code, unexpected_cfgs)]
#[path = "../../evident/examples/bank.rs"]
mod bank;
// Event names follow the seeds' vocabulary (OrderPlaced, OrderPaid, OrderShipped).
#[allow(dead_code, unexpected_cfgs, clippy::enum_variant_names)]
#[path = "../../evident/examples/orders.rs"]
mod orders;

use std::sync::Arc;

use common::Server;
use evident::projection::Sink;
use evident::{Backend, HttpBackend};

fn http(server: &Server) -> Arc<dyn Backend> {
    Arc::new(HttpBackend::new(server.base()).expect("backend"))
}

#[test]
fn the_bank_example_runs_unchanged_over_http() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Sink::sqlite(dir.path().join("rm.sqlite")).expect("sink");
    let report = bank::run(http(&server), sink, "h").expect("the example runs over HTTP");
    assert_eq!(report.alice, 9_500);
    assert_eq!(report.alice_before_withdrawal, 12_000);
    let bob: u64 = (0..249u64).map(|i| 100 + i % 7).sum();
    assert_eq!(report.bob, bob);
    assert_eq!(report.bob_snapshot, Some(evident::Version(199)), "the snapshot written over HTTP is used");
    assert_eq!(report.bob_replayed, 50);
    assert_eq!(report.balances, vec![("alice-h".to_string(), 9500), ("bob-h".to_string(), bob as i64)]);
}

#[test]
fn the_orders_example_parks_and_retries_over_http() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let report = orders::run(http(&server), dir.path(), "h").expect("the example runs over HTTP");
    let stream = "order-events/order-h-legacy".to_string();
    assert_eq!(report.payments, 4);
    assert_eq!(report.revenue_before_fix, 2500 + 4000 + 1550);
    assert_eq!(report.shipped_before_fix, 3);
    assert_eq!(report.parked, vec![(stream.clone(), "parked".to_string()), (stream, "held".to_string())]);
    assert_eq!(report.revenue_after_fix, 2500 + 4000 + 1550 + 999);
    assert_eq!(report.shipped_after_fix, 4);
    assert_eq!(report.parked_after_fix, 0);
}
