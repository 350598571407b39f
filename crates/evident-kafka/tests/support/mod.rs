//! What the protocol-level suites share: a broker on a loopback port over a fresh log, its
//! group store and a manual clock (one clock for the broker, its coordinator and the store, so a
//! test decides when sessions expire), and a client connection that sends one request encoded
//! by `kafka-protocol` as a client would and decodes the answer whole, failing on left-over
//! bytes so that an answer encoded at the wrong version cannot pass.

// Each suite uses its own part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use evident_groups::GroupStore;
use evident_kafka::{Broker, KafkaConfig, KafkaServer};
use evident_log::clock::ManualClock;
use evident_log::{Log, LogConfig, TopicConfig};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The manual clock's start: a fixed instant, so that timestamps in answers are predictable.
pub const T0: i64 = 1_700_000_000_000;

/// A broker serving a fresh log until dropped.
pub struct Server {
    _dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub log: Arc<Log>,
    pub groups: Arc<GroupStore>,
    pub clock: Arc<ManualClock>,
    _shutdown: watch::Sender<bool>,
    _commits: watch::Sender<u64>,
}

/// Starts a broker whose log holds `topics`, created before the first connection.
pub async fn start(topics: &[(&str, TopicConfig)]) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Log::open(dir.path(), LogConfig::default()).expect("log"));
    for (name, config) in topics {
        log.create_topic(name, config.clone()).expect("topic");
    }
    let clock = Arc::new(ManualClock::new(T0));
    let groups = Arc::new(GroupStore::open(log.clone(), clock.clone()).expect("group store"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let config = KafkaConfig { addr, ..KafkaConfig::default() };
    let (commits_tx, commits) = watch::channel(0u64);
    let (shutdown_tx, shutdown) = watch::channel(false);
    let broker = Broker::new(log.clone(), groups.clone(), config, commits, shutdown, clock.clone(), addr.port());
    tokio::spawn(KafkaServer::new(listener, Arc::new(broker)).run());
    Server { _dir: dir, addr, log, groups, clock, _shutdown: shutdown_tx, _commits: commits_tx }
}

/// One client connection speaking the Kafka protocol, one request at a time.
pub struct Wire {
    stream: TcpStream,
    client_id: String,
    correlation_id: i32,
}

impl Wire {
    pub async fn connect(addr: SocketAddr, client_id: &str) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self { stream, client_id: client_id.to_string(), correlation_id: 0 }
    }

    /// Sends `request` at `version` and decodes the whole answer; an answer not within 20 s
    /// fails the test (a bound on a broken server, not a timing assertion).
    pub async fn send<Req: Encodable, Resp: Decodable>(&mut self, key: ApiKey, version: i16, request: &Req) -> Resp {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        // One write for size and frame: two small writes would wait on Nagle and delayed ACKs.
        let mut frame = BytesMut::from(&[0u8; 4][..]);
        header.encode(&mut frame, key.request_header_version(version)).expect("encode header");
        request.encode(&mut frame, version).expect("encode request");
        let len = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&frame).await.expect("write");
        let answer = tokio::time::timeout(Duration::from_secs(20), async {
            let len = self.stream.read_u32().await.expect("the server answers (the connection is open)");
            let mut body = vec![0u8; len as usize];
            self.stream.read_exact(&mut body).await.expect("read");
            body
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {key:?} v{version} in time"));
        let mut body = Bytes::from(answer);
        let response_header =
            ResponseHeader::decode(&mut body, key.response_header_version(version)).expect("response header");
        assert_eq!(response_header.correlation_id, self.correlation_id);
        let response = Resp::decode(&mut body, version).expect("response");
        assert!(body.is_empty(), "{key:?} v{version}: {} bytes left over", body.len());
        response
    }
}
