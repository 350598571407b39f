//! A Kafka connection whose request body trickles in is closed at the request timeout (review
//! W8: the deadline used to cover only the 4-byte size; reliability probe 2c), however long
//! the idle timeout, while a request that arrives whole on another connection is answered
//! meanwhile. The timeout is a tokio timer on the server, so the test waits on the wall clock,
//! for a 300 ms timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use evident_groups::GroupStore;
use evident_kafka::{Broker, KafkaConfig, KafkaServer};
use evident_log::clock::SystemClock;
use evident_log::{Log, LogConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const REQUEST: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_body_is_cut_off_at_the_request_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Log::open(dir.path(), LogConfig::default()).expect("log"));
    let clock = Arc::new(SystemClock);
    let groups = Arc::new(GroupStore::open(log.clone(), clock.clone()).expect("groups"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = KafkaConfig { addr, request_timeout: REQUEST, ..KafkaConfig::default() };
    let (_commits_tx, commits) = watch::channel(0u64);
    let (_shutdown_tx, shutdown) = watch::channel(false);
    let broker = Arc::new(Broker::new(log, groups, config, commits, shutdown, clock, addr.port()));
    let metrics = broker.metrics.clone();
    tokio::spawn(KafkaServer::new(listener, broker).run());

    let mut slow = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    // A 100-byte frame announced, 10 bytes sent, one more byte now and then.
    slow.write_all(&100u32.to_be_bytes()).await.expect("size");
    slow.write_all(&[0u8; 10]).await.expect("part of the body");
    let mut closed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if slow.write_all(&[0]).await.is_err() {
            closed = true;
            break;
        }
        // ApiVersions v0 (null client id) on a fresh connection is answered meanwhile.
        let mut fresh = TcpStream::connect(addr).await.expect("connect");
        fresh.write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff]).await.expect("request");
        let size = fresh.read_u32().await.expect("answered");
        assert!(size > 8, "{size}");
        let mut buf = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "the trickling connection is still open after {:?}", started.elapsed());
    assert!(started.elapsed() >= REQUEST, "closed before the timeout: {:?}", started.elapsed());
    assert!(metrics.snapshot().requests.iter().any(|(api, n)| api == "ApiVersions" && *n > 0));
}
