//! The `?verify=stored` check of `evident serve`: a candidate schema is tried on every event
//! stored for the subject ([`evident_registry::verify::verify_stored`]), and each event it
//! cannot read becomes a reason that refuses the registration (409) or makes the compatibility
//! answer `is_compatible: false`, naming the event by topic, partition and offset.

use std::sync::Arc;

use evident_log::Log;
use evident_registry::{ParsedSchema, RegistryError, RegistryStore, SchemaSource};

use super::StoredVerifier;

/// Failures reported per check: enough to locate the problem, bounded so a subject with a
/// million unreadable events answers quickly and briefly.
const FAILURES_MAX: usize = 10;

/// Verifies against the events in `log`, schemas resolved through the registry `store`.
pub struct StoredEvents {
    log: Arc<Log>,
    store: Arc<RegistryStore>,
}

impl StoredEvents {
    /// A verifier over the server's log and registry.
    pub fn new(log: Arc<Log>, store: Arc<RegistryStore>) -> Self {
        Self { log, store }
    }
}

impl StoredVerifier for StoredEvents {
    fn verify(&self, subject: &str, candidate: &ParsedSchema) -> Result<Vec<String>, RegistryError> {
        let source: &dyn SchemaSource = self.store.as_ref();
        let report = evident_registry::verify::verify_stored(&self.log, source, subject, candidate, FAILURES_MAX)?;
        let mut reasons: Vec<String> = report
            .failures
            .iter()
            .map(|f| {
                format!(
                    "stored event {}/{}@{} cannot be read with this schema: {}",
                    f.topic, f.partition, f.offset, f.reason
                )
            })
            .collect();
        if report.stopped_early {
            reasons.push(format!("(stopped after {} unreadable stored events)", report.failures.len()));
        }
        Ok(reasons)
    }
}
