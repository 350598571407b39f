//! Mirroring membership into `evident-groups`, so the HTTP API shows each member with its
//! partitions and refuses resets and deletes while a group is active.
//!
//! The authority for membership of a Kafka group is the coordinator (`group.rs`): it alone
//! decides who is a member and when a session ends. The group store holds a read model of it.
//! The two cannot drift on expiry: the store expires a member when `last heartbeat + session
//! timeout` passes on the same injected clock, and every heartbeat the coordinator records is
//! mirrored at once, so both reach the same deadline; the one case where the coordinator keeps
//! a silent member (one waiting in a JoinGroup or SyncGroup, which cannot heartbeat) is
//! touched on every tick, and a member the store dropped anyway is registered again from the
//! coordinator's record.

use evident_groups::{GroupStore, MemberInfo, SESSION_TIMEOUT_MIN_MS};

use super::group::{MemberRecord, Mirror};
use crate::consumer_protocol::{decode_assignment, decode_subscription};

/// Applies a group's queued effects to the store.
pub(super) fn apply(store: &GroupStore, group: &str, effects: Vec<Mirror>) {
    for effect in effects {
        match effect {
            Mirror::Upsert(record) => upsert(store, group, record),
            Mirror::Touch(record) => match store.heartbeat(group, &record.member_id) {
                Ok(()) => {}
                Err(evident_groups::Error::UnknownMember { .. }) => upsert(store, group, record),
                Err(e) => {
                    tracing::warn!(group, member = %record.member_id, error = %e, "cannot mirror a heartbeat into the group store")
                }
            },
            Mirror::Remove(member_id) => match store.leave_member(group, &member_id) {
                Ok(()) | Err(evident_groups::Error::UnknownMember { .. }) => {}
                Err(e) => {
                    tracing::warn!(group, member = %member_id, error = %e, "cannot remove the member from the group store")
                }
            },
        }
    }
}

fn upsert(store: &GroupStore, group: &str, r: MemberRecord) {
    let assignment = if r.consumer { decode_assignment(&r.assignment).unwrap_or_default() } else { Vec::new() };
    if r.consumer {
        if let Some(subscription) = decode_subscription(&r.metadata) {
            tracing::debug!(group, member = %r.member_id, topics = ?subscription.topics, "member subscription");
        }
    }
    let info = MemberInfo {
        member_id: r.member_id.clone(),
        client_id: r.client_id,
        client_host: r.client_host,
        session_timeout_ms: u32::try_from(r.session_timeout_ms).unwrap_or(SESSION_TIMEOUT_MIN_MS),
        assignment,
    };
    if let Err(e) = store.join_member(group, info) {
        tracing::warn!(group, member = %r.member_id, error = %e, "cannot mirror the member into the group store");
    }
}
