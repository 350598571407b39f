//! An axum service on the async library: its handlers execute bank-account commands through the
//! repository (awaited in the handler, no `spawn_blocking`), and serve balances from a
//! projection that a background task keeps up to date in SQLite. This is the shape of the usual
//! Rust service, and the reason the library is async.
//!
//! ```text
//! cargo run --release -p evident --example axum_service -- 127.0.0.1:3000
//! curl -XPOST localhost:3000/accounts/a1/open -d '{"owner":"ann"}' -H 'content-type: application/json'
//! curl -XPOST localhost:3000/accounts/a1/deposit -d '{"amount":500}' -H 'content-type: application/json'
//! curl localhost:3000/accounts/a1/balance
//! ```
//!
//! The test at the bottom starts the service on a real TCP port and drives it over HTTP.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use evident::projection::{EventFailed, HandlerError, Projection, ProjectionRunner, Sink, Subscription, ToParam, Tx};
use evident::{Aggregate, Backend, CommandError, DomainEvent, EmbeddedBackend, RecordedEvent, Repository};
use serde::{Deserialize, Serialize};

// ---- The domain ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}
impl DomainEvent for AccountEvent {}

#[derive(Debug, Clone)]
enum AccountCommand {
    Open { owner: String },
    Deposit(u64),
    Withdraw(u64),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Account {
    owner: Option<String>,
    balance: u64,
}

impl Aggregate for Account {
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = String;
    const TOPIC: &'static str = "axum-accounts";

    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, String> {
        match (command, &self.owner) {
            (AccountCommand::Open { .. }, Some(_)) => Err("the account is already open".into()),
            (AccountCommand::Open { owner }, None) => Ok(vec![AccountEvent::Opened { owner: owner.clone() }]),
            (_, None) => Err("the account is not open".into()),
            (AccountCommand::Deposit(0) | AccountCommand::Withdraw(0), _) => Err("amounts must be positive".into()),
            (AccountCommand::Deposit(a), _) => Ok(vec![AccountEvent::Deposited { amount: *a }]),
            (AccountCommand::Withdraw(a), _) if *a > self.balance => Err("insufficient funds".into()),
            (AccountCommand::Withdraw(a), _) => Ok(vec![AccountEvent::Withdrawn { amount: *a }]),
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner = Some(owner.clone()),
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
        }
    }
}

/// The read model: one row per account. It writes a page of events at a time
/// (`handle_batch`: the page folded per account, then one multi-row upsert), and one event at a
/// time in `handle`, which the runner uses to find and retry an event that fails.
struct Balances;

const UPSERT_HEAD: &str = "INSERT INTO {balances} (account, balance) VALUES";
const UPSERT_TAIL: &str = "ON CONFLICT (account) DO UPDATE SET balance = {balances}.balance + excluded.balance";

/// An event's account and what it changes the balance by.
fn delta(event: &RecordedEvent) -> Result<(&str, i64), HandlerError> {
    let account = event.key.as_deref().ok_or("an account event without a key")?;
    let delta = match evident::event::decode::<AccountEvent>(event, &evident::Upcasters::default())? {
        AccountEvent::Opened { .. } => 0,
        AccountEvent::Deposited { amount } => i64::try_from(amount)?,
        AccountEvent::Withdrawn { amount } => -i64::try_from(amount)?,
    };
    Ok((account, delta))
}

impl Projection for Balances {
    fn name(&self) -> &str {
        "axum-balances"
    }
    fn subscription(&self) -> Subscription {
        Subscription::topic(Account::TOPIC)
    }
    fn tables(&self) -> Vec<String> {
        vec!["balances".into()]
    }
    fn setup(&mut self, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        tx.batch("CREATE TABLE IF NOT EXISTS {balances} (account TEXT PRIMARY KEY, balance BIGINT NOT NULL)")?;
        Ok(())
    }
    fn handle(&mut self, event: &RecordedEvent, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        let (account, delta) = delta(event)?;
        tx.execute_values(UPSERT_HEAD, 2, &[&account, &delta], UPSERT_TAIL)?;
        Ok(())
    }
    fn handle_batch(&mut self, events: &[&RecordedEvent], tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        // One row per account (an upsert may not name a key twice), sorted.
        let mut page: BTreeMap<&str, i64> = BTreeMap::new();
        for (index, event) in events.iter().enumerate() {
            let (account, delta) = delta(event).map_err(|error| EventFailed { index, error })?;
            *page.entry(account).or_default() += delta;
        }
        let params: Vec<&dyn ToParam> = page.iter().flat_map(|(a, d)| [a as &dyn ToParam, d]).collect();
        tx.execute_values(UPSERT_HEAD, 2, &params, UPSERT_TAIL)?;
        Ok(())
    }
}

// ---- The service --------------------------------------------------------------------------

struct App {
    accounts: Repository<Account>,
    /// A reader of the projection's database (the runner's task owns the writer).
    read_model: tokio::sync::Mutex<Sink>,
}

#[derive(Deserialize)]
struct Open {
    owner: String,
}

#[derive(Deserialize)]
struct Amount {
    amount: u64,
}

#[derive(Serialize)]
struct Reply {
    balance: u64,
    version: Option<evident::Version>,
}

type Answer = Result<Json<Reply>, (StatusCode, String)>;

async fn command(app: &App, id: &str, command: AccountCommand) -> Answer {
    match app.accounts.execute(id, &command).await {
        Ok(done) => Ok(Json(Reply { balance: done.state.balance, version: done.version })),
        Err(CommandError::Domain(why)) => Err((StatusCode::CONFLICT, why)),
        Err(CommandError::Store(e)) => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

async fn open(State(app): State<Arc<App>>, Path(id): Path<String>, Json(body): Json<Open>) -> Answer {
    command(&app, &id, AccountCommand::Open { owner: body.owner }).await
}

async fn deposit(State(app): State<Arc<App>>, Path(id): Path<String>, Json(body): Json<Amount>) -> Answer {
    command(&app, &id, AccountCommand::Deposit(body.amount)).await
}

async fn withdraw(State(app): State<Arc<App>>, Path(id): Path<String>, Json(body): Json<Amount>) -> Answer {
    command(&app, &id, AccountCommand::Withdraw(body.amount)).await
}

/// The balance as the projection has it (eventually consistent with the commands).
async fn balance(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    let rows = app
        .read_model
        .lock()
        .await
        .query("SELECT balance FROM balances WHERE account = $1", &[&id])
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let balance = rows.first().and_then(|r| r.first()).and_then(|v| v.as_i64());
    match balance {
        Some(b) => Ok(Json(Reply { balance: u64::try_from(b).unwrap_or(0), version: None })),
        None => Err((StatusCode::NOT_FOUND, format!("no account {id} in the read model (yet)"))),
    }
}

/// Serves on `listener` until `shutdown` completes: the HTTP API, and the projection runner as a
/// task beside it.
async fn serve(
    listener: tokio::net::TcpListener,
    backend: Arc<dyn Backend>,
    read_model: &std::path::Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> evident::Result<()> {
    let accounts = Repository::<Account>::new(backend.clone());
    accounts.ensure_topics().await?;
    let mut runner = ProjectionRunner::new(backend, Sink::sqlite(read_model)?, Balances).await?;
    let app = Arc::new(App { accounts, read_model: tokio::sync::Mutex::new(Sink::sqlite(read_model)?) });
    let router = Router::new()
        .route("/accounts/{id}/open", post(open))
        .route("/accounts/{id}/deposit", post(deposit))
        .route("/accounts/{id}/withdraw", post(withdraw))
        .route("/accounts/{id}/balance", get(balance))
        .with_state(app);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let projection = tokio::spawn(async move {
        let mut stop = stop_rx.clone();
        runner.run_until(async move { while stop.changed().await.is_ok() && !*stop.borrow() {} }).await
    });
    let served = axum::serve(listener, router).with_graceful_shutdown(shutdown).await;
    let _ = stop_tx.send(true);
    projection.await.map_err(|e| evident::Error::Unavailable(format!("the projection task failed: {e}")))??;
    served.map_err(|e| evident::Error::Unavailable(format!("serving: {e}")))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3000".into());
    let dir = tempfile::tempdir()?;
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::open(dir.path().join("log"))?);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("serving on http://{}", listener.local_addr()?);
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(listener, backend, &dir.path().join("read-model.sqlite"), ctrl_c).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One HTTP/1.1 request over a fresh TCP connection: the status and the body.
    async fn call(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.expect("read");
        let status = reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commands_and_a_projected_balance_over_http() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::open(dir.path().join("log")).expect("open"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let read_model = dir.path().join("read-model.sqlite");
        let server = tokio::spawn(async move {
            serve(listener, backend, &read_model, async {
                let _ = stop_rx.await;
            })
            .await
        });

        assert_eq!(call(addr, "POST", "/accounts/a1/open", r#"{"owner":"ann"}"#).await.0, 200);
        let (status, body) = call(addr, "POST", "/accounts/a1/deposit", r#"{"amount":500}"#).await;
        assert_eq!((status, body.as_str()), (200, r#"{"balance":500,"version":1}"#));
        let (status, body) = call(addr, "POST", "/accounts/a1/withdraw", r#"{"amount":900}"#).await;
        assert_eq!((status, body.as_str()), (409, "insufficient funds"), "the aggregate refuses an overdraft");
        assert_eq!(call(addr, "POST", "/accounts/a1/withdraw", r#"{"amount":200}"#).await.0, 200);

        // The read model follows the commands within the runner's wake-up; wait for it, bounded.
        let mut seen = (0, String::new());
        for _ in 0..500 {
            seen = call(addr, "GET", "/accounts/a1/balance", "").await;
            if seen.1 == r#"{"balance":300,"version":null}"# {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(seen, (200, r#"{"balance":300,"version":null}"#.to_string()), "the projected balance");
        assert_eq!(call(addr, "GET", "/accounts/nobody/balance", "").await.0, 404);

        stop_tx.send(()).expect("stop");
        server.await.expect("join").expect("the service stops cleanly");
    }
}
