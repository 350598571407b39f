//! Group membership: who consumes for a group, what they were assigned, and when they were last
//! heard from. Members live in memory only, as they effectively do in Kafka: after a restart
//! every client's heartbeat is answered "unknown member" and the client rejoins, so persisting
//! them would buy nothing. A member whose session timeout passes without a heartbeat is expired
//! the next time anyone looks at its group.

use std::collections::BTreeMap;

use evident_core::TopicName;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Kafka's default `group.min.session.timeout.ms`: shorter sessions make clients heartbeat so
/// often that a busy group becomes a load problem.
pub const SESSION_TIMEOUT_MIN_MS: u32 = 6_000;
/// Kafka's default `group.max.session.timeout.ms`: a longer one would let a dead consumer hold
/// its partitions for too long.
pub const SESSION_TIMEOUT_MAX_MS: u32 = 1_800_000;
/// Most members in one group; bounds the memory a peer can claim by joining.
pub const MEMBERS_PER_GROUP_MAX: usize = 10_000;
/// Longest member id, client id or client host, in bytes (Kafka member ids are the client id
/// plus a UUID, so this leaves room for any sensible client id).
pub const MEMBER_FIELD_LEN_MAX: usize = 2_048;
/// Most partitions assigned to one member; bounds the memory of one join.
pub const ASSIGNMENT_PARTITIONS_MAX: usize = 100_000;

/// Partitions of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPartitions {
    /// Topic.
    pub topic: TopicName,
    /// Partitions, in the order the assignor gave them.
    pub partitions: Vec<u32>,
}

/// What a member tells when it joins (Kafka's JoinGroup and SyncGroup together).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Member id, unique in the group.
    pub member_id: String,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's host (address), as Kafka's tools show it.
    pub client_host: String,
    /// The member is expired when this long passes without a heartbeat.
    pub session_timeout_ms: u32,
    /// Partitions the member consumes.
    pub assignment: Vec<TopicPartitions>,
}

/// A member as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's host.
    pub client_host: String,
    /// Session timeout; `None` for a member of a group on a Kafka cluster (DescribeGroups
    /// does not tell).
    pub session_timeout_ms: Option<u32>,
    /// When the member last joined or heartbeated (ms since the epoch, the store's clock);
    /// `None` on a Kafka cluster, as the session timeout.
    pub last_heartbeat_ms: Option<i64>,
    /// Partitions the member consumes.
    pub assignment: Vec<TopicPartitions>,
}

/// A member held in memory.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub info: MemberInfo,
    pub last_heartbeat_ms: i64,
}

impl Member {
    /// Whether the session is still open at `now_ms`: a member is alive strictly before
    /// `last heartbeat + session timeout`, as Kafka's heartbeat deadline.
    pub fn is_alive(&self, now_ms: i64) -> bool {
        now_ms < self.last_heartbeat_ms.saturating_add(i64::from(self.info.session_timeout_ms))
    }

    pub fn describe(&self) -> MemberDescription {
        MemberDescription {
            member_id: self.info.member_id.clone(),
            client_id: self.info.client_id.clone(),
            client_host: self.info.client_host.clone(),
            session_timeout_ms: Some(self.info.session_timeout_ms),
            last_heartbeat_ms: Some(self.last_heartbeat_ms),
            assignment: self.info.assignment.clone(),
        }
    }
}

/// Removes the members whose session ended; returns how many.
pub(crate) fn expire(members: &mut BTreeMap<String, Member>, now_ms: i64) -> usize {
    let before = members.len();
    members.retain(|_, m| m.is_alive(now_ms));
    before - members.len()
}

/// Checks what a peer sent about a member.
pub(crate) fn validate(info: &MemberInfo) -> Result<()> {
    if info.member_id.is_empty() {
        return Err(Error::InvalidMember("member id is empty".into()));
    }
    for (what, value) in
        [("member id", &info.member_id), ("client id", &info.client_id), ("client host", &info.client_host)]
    {
        if value.len() > MEMBER_FIELD_LEN_MAX {
            return Err(Error::InvalidMember(format!(
                "{what} is {} bytes long; at most {MEMBER_FIELD_LEN_MAX} are allowed",
                value.len()
            )));
        }
    }
    if !(SESSION_TIMEOUT_MIN_MS..=SESSION_TIMEOUT_MAX_MS).contains(&info.session_timeout_ms) {
        return Err(Error::InvalidMember(format!(
            "session timeout {} ms is outside {SESSION_TIMEOUT_MIN_MS}..={SESSION_TIMEOUT_MAX_MS} ms",
            info.session_timeout_ms
        )));
    }
    let assigned: usize = info.assignment.iter().map(|t| t.partitions.len()).sum();
    if assigned > ASSIGNMENT_PARTITIONS_MAX {
        return Err(Error::InvalidMember(format!(
            "{assigned} partitions assigned; at most {ASSIGNMENT_PARTITIONS_MAX} are allowed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, timeout: u32) -> MemberInfo {
        MemberInfo {
            member_id: id.into(),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: timeout,
            assignment: Vec::new(),
        }
    }

    #[test]
    fn a_session_ends_at_its_deadline() {
        let m = Member { info: info("m", 10_000), last_heartbeat_ms: 1_000 };
        assert!(m.is_alive(1_000));
        assert!(m.is_alive(10_999));
        assert!(!m.is_alive(11_000));
        let mut members = BTreeMap::from([
            ("m".to_string(), m),
            ("n".to_string(), Member { info: info("n", 10_000), last_heartbeat_ms: 5_000 }),
        ]);
        assert_eq!(expire(&mut members, 11_000), 1);
        assert_eq!(members.keys().collect::<Vec<_>>(), ["n"]);
    }

    #[test]
    fn peers_cannot_send_anything() {
        assert!(validate(&info("m", 6_000)).is_ok());
        let cases = [
            (info("", 10_000), "member id is empty"),
            (info("m", 5_999), "session timeout 5999 ms is outside 6000..=1800000 ms"),
            (info("m", 1_800_001), "session timeout 1800001 ms is outside 6000..=1800000 ms"),
            (info(&"x".repeat(2_049), 10_000), "member id is 2049 bytes long; at most 2048 are allowed"),
        ];
        for (info, expect) in cases {
            let err = validate(&info).unwrap_err();
            assert!(matches!(&err, Error::InvalidMember(m) if m == expect), "{err}");
        }
    }
}
