//! The library's Kafka backend for the test suites that also run on a Kafka cluster (the
//! repository and projection suites): on the cluster `EVIDENT_TEST_KAFKA_BOOTSTRAP` names
//! (scripts/test.sh starts three brokers for the run), each test in a topic namespace of its
//! own (`KafkaConfig::topic_prefix`), so tests running at once, and earlier runs, do not see
//! each other's topics.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use evident::Backend;

/// A Kafka backend for `test` with its mirror in `dir`; None, after a skip line, without a
/// cluster (a failure when `EVIDENT_REQUIRE_KAFKA_CLUSTER=1`).
pub fn kafka_backend(test: &str, dir: &Path) -> Option<Arc<dyn Backend>> {
    let Ok(bootstrap) = std::env::var("EVIDENT_TEST_KAFKA_BOOTSTRAP") else {
        assert!(
            std::env::var("EVIDENT_REQUIRE_KAFKA_CLUSTER").ok().as_deref() != Some("1"),
            "{test}: EVIDENT_TEST_KAFKA_BOOTSTRAP is not set and EVIDENT_REQUIRE_KAFKA_CLUSTER=1"
        );
        eprintln!("SKIPPED {test} on Kafka: EVIDENT_TEST_KAFKA_BOOTSTRAP is not set (scripts/test.sh sets it)");
        return None;
    };
    let mut config = evident::KafkaConfig::new(bootstrap, dir.join("mirror"));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    config.topic_prefix = format!("{test}-{}-{nanos}-", std::process::id());
    config.timeout = Duration::from_secs(60);
    Some(Arc::new(evident::KafkaBackend::open(config).expect("open the Kafka backend")))
}
