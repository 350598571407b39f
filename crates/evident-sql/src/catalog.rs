//! The views' definitions, kept in the internal topic `_evident_sql` (one partition,
//! compacted, as `_schemas` keeps the registry): a record per CREATE, keyed by the view's
//! name, holding its statement; a tombstone per DROP. Replayed at open, so views survive a
//! restart with their statements exactly as written.

use std::collections::BTreeMap;

use evident_core::BatchBuilder;
use evident_log::{CleanupPolicy, Log, ScanError, TopicConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SqlError};
use crate::parse::ViewKind;

/// The catalog topic.
pub const CATALOG_TOPIC: &str = "_evident_sql";

/// A view as the catalog keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    /// Name (also its changelog or output topic).
    pub name: String,
    /// Table or stream.
    pub kind: ViewKind,
    /// The CREATE statement as written.
    pub sql: String,
    /// When it was created (ms since the epoch).
    pub created_ms: i64,
}

/// Creates the catalog topic if absent and reads every live definition.
pub fn open(log: &Log) -> Result<BTreeMap<String, ViewDef>> {
    let config = TopicConfig {
        partitions: 1,
        cleanup_policy: CleanupPolicy::Compact,
        key_partition_guard: false,
        ..TopicConfig::default()
    };
    match log.create_topic(CATALOG_TOPIC, config) {
        Ok(_) | Err(evident_log::Error::TopicExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let mut views = BTreeMap::new();
    log.scan_partition(CATALOG_TOPIC, 0, |offset, key, value| {
        let name = key
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .ok_or_else(|| SqlError::Corrupted(format!("{CATALOG_TOPIC} record at offset {offset} has no key")))?;
        match value {
            None => {
                views.remove(&name);
            }
            Some(v) => {
                let def: ViewDef = serde_json::from_slice(v)
                    .map_err(|e| SqlError::Corrupted(format!("{CATALOG_TOPIC} record at offset {offset}: {e}")))?;
                views.insert(name, def);
            }
        }
        Ok(())
    })
    .map_err(|e| match e {
        ScanError::Log(e) => SqlError::Log(e),
        ScanError::Damaged { offset, what } => {
            SqlError::Corrupted(format!("{CATALOG_TOPIC} is damaged at offset {offset}: {what}"))
        }
        ScanError::Visitor(e) => e,
    })?;
    Ok(views)
}

/// Records a definition (durable when this returns).
pub fn put(log: &Log, def: &ViewDef) -> Result<()> {
    let value = serde_json::to_vec(def).map_err(|e| SqlError::Corrupted(e.to_string()))?;
    write(log, &def.name, Some(&value), def.created_ms)
}

/// Records a DROP.
pub fn remove(log: &Log, name: &str, now_ms: i64) -> Result<()> {
    write(log, name, None, now_ms)
}

fn write(log: &Log, name: &str, value: Option<&[u8]>, now_ms: i64) -> Result<()> {
    let mut b = BatchBuilder::new();
    b.push_parts(Some(name.as_bytes()), value, &[], now_ms);
    log.append_batch(CATALOG_TOPIC, 0, &b.build(), None)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_front_doors_know_the_catalog_topic_is_internal() {
        assert_eq!(super::CATALOG_TOPIC, evident_groups::SQL_TOPIC);
        assert!(evident_groups::is_internal_topic(super::CATALOG_TOPIC));
    }
}
