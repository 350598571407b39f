//! The consumer protocol's embedded formats: the bytes a Kafka consumer puts in JoinGroup's
//! protocol metadata (its subscription) and the leader puts in SyncGroup's assignments. The
//! broker treats them as opaque, except that evident decodes them to show each member's topics
//! and partitions (`GET /v1/groups/{group}`, the debug log). Every byte comes from a peer, so
//! every length is checked against the bytes present before anything is allocated, and a
//! malformed value is `None`, never a panic; `fuzz/fuzz_targets/consumer_protocol.rs` and the
//! property tests below hold them to that.
//!
//! Formats (Kafka's `ConsumerProtocolSubscription` v0–3 and `ConsumerProtocolAssignment` v0–3,
//! never flexible): big-endian integers, strings as an `i16` length and UTF-8, arrays as an
//! `i32` count, bytes as an `i32` length (-1: null).

use evident_core::TopicName;
use evident_groups::TopicPartitions;

/// A member's subscription, as far as evident uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The topics the member subscribes to, in its order.
    pub topics: Vec<String>,
    /// The partitions it owned before this rebalance (v1+, cooperative assignors).
    pub owned: Vec<(String, Vec<i32>)>,
}

/// Decodes a consumer protocol subscription (JoinGroup metadata). Fields after the owned
/// partitions (generation, rack) are not needed and not read.
pub fn decode_subscription(bytes: &[u8]) -> Option<Subscription> {
    let mut r = Reader(bytes);
    let version = r.i16()?;
    if version < 0 {
        return None;
    }
    let count = r.count(2)?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        topics.push(r.string()?);
    }
    r.nullable_bytes()?;
    let owned = if version >= 1 { r.topic_partitions()? } else { Vec::new() };
    Some(Subscription { topics, owned })
}

/// Decodes a consumer protocol assignment (SyncGroup) into topics and partitions; user data is
/// ignored. Topics whose names evident cannot hold are skipped (no such topic can exist here);
/// a negative partition makes the whole value malformed.
pub fn decode_assignment(bytes: &[u8]) -> Option<Vec<TopicPartitions>> {
    let mut r = Reader(bytes);
    if r.i16()? < 0 {
        return None;
    }
    let mut out = Vec::new();
    for (name, partitions) in r.topic_partitions()? {
        let partitions = partitions.into_iter().map(|p| u32::try_from(p).ok()).collect::<Option<Vec<u32>>>()?;
        if let Ok(topic) = TopicName::new(name) {
            out.push(TopicPartitions { topic, partitions });
        }
    }
    Some(out)
}

/// A cursor over peer bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An array count whose elements take at least `element_min` bytes each: refused if the
    /// bytes left cannot hold that many, so an allocation sized by it is bounded by the input.
    fn count(&mut self, element_min: usize) -> Option<usize> {
        let n = usize::try_from(self.i32()?).ok()?;
        (n <= self.0.len() / element_min).then_some(n)
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        std::str::from_utf8(self.take(len)?).ok().map(str::to_string)
    }

    fn nullable_bytes(&mut self) -> Option<&'a [u8]> {
        match self.i32()? {
            -1 => Some(&[]),
            len => self.take(usize::try_from(len).ok()?),
        }
    }

    /// An array of (topic, array of i32 partitions).
    fn topic_partitions(&mut self) -> Option<Vec<(String, Vec<i32>)>> {
        // A topic entry takes at least 6 bytes (empty name, empty array).
        let topics = self.count(6)?;
        let mut out = Vec::with_capacity(topics);
        for _ in 0..topics {
            let name = self.string()?;
            let count = self.count(4)?;
            let mut partitions = Vec::with_capacity(count);
            for _ in 0..count {
                partitions.push(self.i32()?);
            }
            out.push((name, partitions));
        }
        Some(out)
    }
}

#[cfg(test)]
pub(crate) mod tests;
