//! The orders example: the CQRS flow of the seeds. An order service emits OrderPlaced,
//! OrderPaid and OrderShipped to `order-events`; a billing service listens and records
//! payments; an analytics projection builds revenue per day. One event, written by an older
//! producer, cannot be processed by analytics: it is parked in the dead-letter topic
//! `analytics.dlq`, the later events of its order wait behind it while other orders proceed,
//! and after the fix it is retried and applied once.
//!
//! ```text
//! cargo run --release -p evident --example orders
//! cargo run --release -p evident --example orders -- --server http://127.0.0.1:8080
//! cargo run --release -p evident --features kafka --example orders -- --kafka 127.0.0.1:9092
//! ```

// Amounts are cents, written with the decimal point as an underscore: 100_00 is 100.00.
#![allow(clippy::inconsistent_digit_grouping)]
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use evident::blocking::ProjectionRunner;
use evident::blocking::Repository;
use evident::projection::{HandlerError, Projection, RunnerOptions, Sink, Subscription, Tx};
use evident::{
    Aggregate, Backend, DomainEvent, EmbeddedBackend, EventData, ExpectedVersion, HttpBackend, RecordedEvent,
    Upcasters, Version,
};
use serde::{Deserialize, Serialize};

// ---- The order service (command side) ----------------------------------------------------

/// What happens to an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderEvent {
    /// A customer placed it.
    OrderPlaced {
        /// Customer.
        customer: String,
        /// Total, in cents.
        total: u64,
    },
    /// It was paid.
    OrderPaid {
        /// Amount, in cents.
        amount: u64,
        /// Payment method.
        method: String,
    },
    /// It left the warehouse.
    OrderShipped {
        /// Carrier.
        carrier: String,
    },
}
impl DomainEvent for OrderEvent {}

/// What can be asked of an order.
#[derive(Debug, Clone)]
pub enum OrderCommand {
    /// Place it.
    Place {
        /// Customer.
        customer: String,
        /// Total, in cents.
        total: u64,
    },
    /// Pay it in full.
    Pay {
        /// Payment method.
        method: String,
    },
    /// Ship it.
    Ship {
        /// Carrier.
        carrier: String,
    },
}

/// An order's lifecycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Not placed.
    #[default]
    New,
    /// Placed, awaiting payment.
    Placed,
    /// Paid, awaiting shipment.
    Paid,
    /// Shipped.
    Shipped,
}

/// An order's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Where it is.
    pub status: Status,
    /// Total, in cents.
    pub total: u64,
}

impl Aggregate for Order {
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = String;
    const TOPIC: &'static str = "order-events";

    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, String> {
        match (command, self.status) {
            (OrderCommand::Place { customer, total }, Status::New) => {
                Ok(vec![OrderEvent::OrderPlaced { customer: customer.clone(), total: *total }])
            }
            (OrderCommand::Pay { method }, Status::Placed) => {
                Ok(vec![OrderEvent::OrderPaid { amount: self.total, method: method.clone() }])
            }
            (OrderCommand::Ship { carrier }, Status::Paid) => {
                Ok(vec![OrderEvent::OrderShipped { carrier: carrier.clone() }])
            }
            (command, status) => Err(format!("{command:?} is not allowed when the order is {status:?}")),
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::OrderPlaced { total, .. } => {
                self.status = Status::Placed;
                self.total = *total;
            }
            OrderEvent::OrderPaid { .. } => self.status = Status::Paid,
            OrderEvent::OrderShipped { .. } => self.status = Status::Shipped,
        }
    }
}

// ---- The billing service: records payments ------------------------------------------------

/// Payments, one row per paid order.
pub struct Billing;

impl Projection for Billing {
    fn name(&self) -> &str {
        "billing"
    }
    fn subscription(&self) -> Subscription {
        Subscription::topic(Order::TOPIC)
    }
    fn tables(&self) -> Vec<String> {
        vec!["payments".into()]
    }
    fn setup(&mut self, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        tx.batch(
            "CREATE TABLE IF NOT EXISTS {payments} (
                order_id TEXT PRIMARY KEY, amount BIGINT NOT NULL, method TEXT NOT NULL, paid_at BIGINT NOT NULL)",
        )?;
        Ok(())
    }
    fn handle(&mut self, event: &RecordedEvent, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        // Billing reads payments as plain JSON: it tolerates the legacy shape (see below).
        if event.event_type.as_deref() != Some("OrderPaid") {
            return Ok(());
        }
        let paid: serde_json::Value = event.json()?;
        let amount = match &paid["amount"] {
            serde_json::Value::String(s) => s.parse::<i64>()?,
            v => v.as_i64().ok_or("amount is missing")?,
        };
        let method = paid["method"].as_str().unwrap_or("unknown");
        tx.execute(
            "INSERT INTO {payments} (order_id, amount, method, paid_at) VALUES ($1, $2, $3, $4)",
            &[&event.key, &amount, &method, &event.timestamp_ms],
        )?;
        Ok(())
    }
}

// ---- The analytics service: revenue per day -------------------------------------------------

/// Revenue per day (of payment), and orders shipped per day.
pub struct Analytics {
    /// The fix: whether the handler understands the legacy producer's payments. Starts false,
    /// as the first version of the service did.
    pub accepts_legacy_amounts: Arc<AtomicBool>,
}

impl Projection for Analytics {
    fn name(&self) -> &str {
        "analytics"
    }
    fn subscription(&self) -> Subscription {
        Subscription::topic(Order::TOPIC)
    }
    fn tables(&self) -> Vec<String> {
        vec!["revenue_by_day".into()]
    }
    fn setup(&mut self, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        tx.batch(
            "CREATE TABLE IF NOT EXISTS {revenue_by_day} (
                day TEXT PRIMARY KEY, revenue BIGINT NOT NULL, orders_paid BIGINT NOT NULL, orders_shipped BIGINT NOT NULL)",
        )?;
        Ok(())
    }
    fn handle(&mut self, event: &RecordedEvent, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        let day = jiff::Timestamp::from_millisecond(event.timestamp_ms)?.strftime("%Y-%m-%d").to_string();
        let (revenue, paid, shipped): (i64, i64, i64) =
            match decode(event, self.accepts_legacy_amounts.load(Ordering::SeqCst))? {
                OrderEvent::OrderPlaced { .. } => return Ok(()),
                OrderEvent::OrderPaid { amount, .. } => (i64::try_from(amount)?, 1, 0),
                OrderEvent::OrderShipped { .. } => (0, 0, 1),
            };
        tx.execute(
            "INSERT INTO {revenue_by_day} (day, revenue, orders_paid, orders_shipped) VALUES ($1, $2, $3, $4)
             ON CONFLICT (day) DO UPDATE SET
                revenue = {revenue_by_day}.revenue + excluded.revenue,
                orders_paid = {revenue_by_day}.orders_paid + excluded.orders_paid,
                orders_shipped = {revenue_by_day}.orders_shipped + excluded.orders_shipped",
            &[&day, &revenue, &paid, &shipped],
        )?;
        Ok(())
    }
}

/// Decodes an order event; the fixed version also reads the legacy producer's string amounts.
fn decode(event: &RecordedEvent, accept_legacy: bool) -> Result<OrderEvent, HandlerError> {
    match evident::event::decode::<OrderEvent>(event, &Upcasters::default()) {
        Ok(e) => Ok(e),
        Err(_) if accept_legacy && event.event_type.as_deref() == Some("OrderPaid") => {
            let v: serde_json::Value = event.json()?;
            let amount = v["amount"].as_str().ok_or("amount is neither a number nor a string")?.parse::<u64>()?;
            Ok(OrderEvent::OrderPaid { amount, method: v["method"].as_str().unwrap_or("unknown").to_string() })
        }
        Err(e) => Err(e.into()),
    }
}

// ---- The program ----------------------------------------------------------------------------

#[derive(Parser, Debug)]
#[command(about = "evident's orders example")]
struct Args {
    /// Use an evident server at this URL instead of the embedded log.
    #[arg(long, conflicts_with = "kafka")]
    server: Option<String>,
    /// Use an Apache Kafka cluster (`host:port,...`) instead of the embedded log; its mirror
    /// goes under the data directory (docs/cluster.md). Needs the `kafka` feature.
    #[arg(long)]
    kafka: Option<String>,
    /// Keep the embedded log and the read models here (default: a fresh temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// What a run found, for the test below.
#[derive(Debug, PartialEq)]
pub struct Report {
    /// Payments billing recorded for this run's orders.
    pub payments: i64,
    /// Revenue analytics counted before the fix (the poison payment parked).
    pub revenue_before_fix: i64,
    /// Orders shipped analytics counted before the fix (the poison order's shipment held).
    pub shipped_before_fix: i64,
    /// Entries in the dead-letter queue before the fix: (stream, kind).
    pub parked: Vec<(String, String)>,
    /// Revenue after the retry.
    pub revenue_after_fix: i64,
    /// Orders shipped after the retry.
    pub shipped_after_fix: i64,
    /// Entries left in the dead-letter queue after the retry.
    pub parked_after_fix: usize,
}

fn sum(runner: &mut ProjectionRunner<Analytics>) -> Result<(i64, i64), Box<dyn std::error::Error>> {
    let rows = runner
        .query("SELECT COALESCE(SUM(revenue), 0), COALESCE(SUM(orders_shipped), 0) FROM {revenue_by_day}", &[])?;
    let row = rows.first().ok_or("no row")?;
    Ok((row[0].as_i64().unwrap_or(0), row[1].as_i64().unwrap_or(0)))
}

/// Runs the example on `backend`; the read models go to SQLite files in `dir`. Order ids carry
/// `run` so that runs against one server do not collide.
pub fn run(backend: Arc<dyn Backend>, dir: &std::path::Path, run: &str) -> Result<Report, Box<dyn std::error::Error>> {
    let orders = Repository::<Order>::new(backend.clone());
    orders.ensure_topics()?;
    // The order service: three orders go through their lifecycle.
    for (n, (customer, total)) in [("ann", 25_00u64), ("bob", 40_00), ("cyd", 15_50)].iter().enumerate() {
        let id = format!("order-{run}-{n}");
        orders.execute(&id, &OrderCommand::Place { customer: customer.to_string(), total: *total })?;
        orders.execute(&id, &OrderCommand::Pay { method: "card".into() })?;
        orders.execute(&id, &OrderCommand::Ship { carrier: "dhl".into() })?;
    }
    // A legacy fulfilment system (an older service, over Kafka or HTTP) writes the payment and
    // shipment of one order itself, with the amount as a string: a poison event for
    // analytics' typed decoding (and for this service's own, which is why it does not touch
    // that order again).
    let legacy = format!("order-{run}-legacy");
    orders.execute(&legacy, &OrderCommand::Place { customer: "dee".into(), total: 9_99 })?;
    evident::blocking::wait(backend.append(
        Order::TOPIC,
        &legacy,
        ExpectedVersion::Exact(Version(0)),
        &[
            EventData::json(format!("{legacy}-paid"), "OrderPaid", br#"{"amount":"999","method":"cash"}"#.to_vec()),
            EventData::json(format!("{legacy}-shipped"), "OrderShipped", br#"{"carrier":"ups"}"#.to_vec()),
        ],
    ))?;
    println!("order service: 4 orders placed, paid and shipped (one payment by the legacy producer)");

    // Billing tolerates the legacy shape.
    let mut billing = ProjectionRunner::new(backend.clone(), Sink::sqlite(dir.join("billing.sqlite"))?, Billing)?;
    billing.catch_up()?;
    let prefix = format!("order-{run}-%");
    let payments = billing.query("SELECT COUNT(*) FROM {payments} WHERE order_id LIKE $1", &[&prefix])?[0][0]
        .as_i64()
        .unwrap_or(0);
    println!("billing: {payments} payments recorded");

    // Analytics does not, yet: the payment is retried, then parked; the order's shipment waits.
    let fixed = Arc::new(AtomicBool::new(false));
    let options = RunnerOptions {
        retry: evident::RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        },
        ..RunnerOptions::default()
    };
    let analytics = Analytics { accepts_legacy_amounts: fixed.clone() };
    let mut runner = ProjectionRunner::with_options(
        backend.clone(),
        Sink::sqlite(dir.join("analytics.sqlite"))?,
        analytics,
        options,
    )?;
    runner.catch_up()?;
    let (revenue_before_fix, shipped_before_fix) = sum(&mut runner)?;
    let dead_letters = runner.dead_letters();
    let mut parked = Vec::new();
    for (stream, entries) in dead_letters.list()? {
        for e in entries {
            println!(
                "analytics: {stream} sequence {} {} ({}, {} attempts{})",
                e.sequence,
                e.kind.as_str(),
                e.event_type.as_deref().unwrap_or("?"),
                e.attempts,
                e.error.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
            );
            parked.push((stream.clone(), e.kind.as_str().to_string()));
        }
    }
    println!(
        "analytics before the fix: revenue {} from 3 orders, {shipped_before_fix} shipped",
        cents(revenue_before_fix)
    );

    // The fix ships; the operator retries the order's parked events (here through the
    // library; `evident dlq retry` and the HTTP API write the same request).
    fixed.store(true, Ordering::SeqCst);
    let stream = format!("{}/{legacy}", Order::TOPIC);
    dead_letters.retry(&stream)?;
    runner.catch_up()?;
    let (revenue_after_fix, shipped_after_fix) = sum(&mut runner)?;
    let parked_after_fix = dead_letters.list()?.values().map(Vec::len).sum();
    println!(
        "analytics after the retry: revenue {} from 4 orders, {shipped_after_fix} shipped, {parked_after_fix} parked",
        cents(revenue_after_fix)
    );
    Ok(Report {
        payments,
        revenue_before_fix,
        shipped_before_fix,
        parked,
        revenue_after_fix,
        shipped_after_fix,
        parked_after_fix,
    })
}

fn cents(c: i64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let _temp;
    let dir = match args.data_dir {
        Some(d) => d,
        None => {
            _temp = tempfile::tempdir()?;
            _temp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&dir)?;
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()) & 0xffff_ffff
    );
    let backend: Arc<dyn Backend> = match (&args.server, &args.kafka) {
        (Some(url), _) => Arc::new(HttpBackend::new(url.as_str())?),
        #[cfg(feature = "kafka")]
        (None, Some(bootstrap)) => {
            Arc::new(evident::KafkaBackend::open(evident::KafkaConfig::new(bootstrap.as_str(), dir.join("mirror")))?)
        }
        #[cfg(not(feature = "kafka"))]
        (None, Some(_)) => return Err("--kafka needs the library's `kafka` feature (--features kafka)".into()),
        (None, None) => Arc::new(EmbeddedBackend::open(dir.join("log"))?),
    };
    run(backend, &dir, &run_id)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_runs_on_the_embedded_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::open(dir.path().join("log")).expect("open"));
        let report = run(backend, dir.path(), "t").expect("runs");
        let stream = "order-events/order-t-legacy".to_string();
        assert_eq!(
            report,
            Report {
                payments: 4,
                revenue_before_fix: 25_00 + 40_00 + 15_50,
                shipped_before_fix: 3,
                parked: vec![(stream.clone(), "parked".into()), (stream, "held".into())],
                revenue_after_fix: 25_00 + 40_00 + 15_50 + 9_99,
                shipped_after_fix: 4,
                parked_after_fix: 0,
            }
        );
    }
}
