//! The crate's one error type. Each variant is a condition a caller answers differently: the
//! HTTP layer maps them to statuses (404 unknown group, 409 group not empty, 400 invalid input)
//! and the Kafka listener to error codes (`GROUP_ID_NOT_FOUND`, `NON_EMPTY_GROUP`,
//! `INVALID_GROUP_ID`, `UNKNOWN_MEMBER_ID`, ...). `Corrupted` and `UnsupportedFormat` are kept
//! apart because one calls for repair and the other for an upgrade.

/// Result alias for consumer groups.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong with consumer groups.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The group has neither committed offsets nor members.
    #[error("unknown consumer group {0:?}")]
    UnknownGroup(String),
    /// The operation needs a group without active members (Kafka's `GroupNotEmptyException`).
    #[error("consumer group {group:?} has {members} active member(s); stop them first")]
    GroupNotEmpty {
        /// The group.
        group: String,
        /// How many members are active.
        members: usize,
    },
    /// A group id breaks the naming rules.
    #[error("invalid group id: {0}")]
    InvalidGroup(String),
    /// An offset commit is malformed or too large; nothing was written.
    #[error("invalid offset commit: {0}")]
    InvalidCommit(String),
    /// An offset reset cannot be planned (no committed offset to shift, empty scope, ...);
    /// nothing was written.
    #[error("invalid offset reset: {0}")]
    InvalidReset(String),
    /// A member's description is malformed (empty id, session timeout out of range, ...).
    #[error("invalid group member: {0}")]
    InvalidMember(String),
    /// The member is not in the group: it never joined, it left, or its session expired.
    #[error("member {member_id:?} is not in consumer group {group:?} (it never joined, left, or its session expired)")]
    UnknownMember {
        /// The group.
        group: String,
        /// The member asked for.
        member_id: String,
    },
    /// The group already has as many members as allowed (Kafka's `GROUP_MAX_SIZE_REACHED`).
    #[error("consumer group {group:?} already has {max} members, the most allowed")]
    GroupFull {
        /// The group.
        group: String,
        /// The limit.
        max: usize,
    },
    /// A record of `__consumer_offsets` cannot be read although it is our own, checksummed
    /// data; opening stops rather than forget committed offsets.
    #[error("__consumer_offsets is corrupted at offset {offset}: {what}")]
    Corrupted {
        /// Offset of the record in `__consumer_offsets`.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A record of `__consumer_offsets` was written in a format this version does not know,
    /// most likely by a newer evident; opening stops rather than misread it.
    #[error("__consumer_offsets offset {offset} uses a format this version of evident does not read ({what}); upgrade evident")]
    UnsupportedFormat {
        /// Offset of the record in `__consumer_offsets`.
        offset: u64,
        /// The unknown version or record kind.
        what: String,
    },
    /// The Kafka cluster that keeps the groups (`evident serve --storage kafka://`) could not
    /// be asked or refused for a reason none of the variants above names; what it said.
    #[error("the Kafka cluster: {0}")]
    Cluster(String),
    /// The log refused or failed (unknown topic or partition, I/O, poisoned, ...).
    #[error(transparent)]
    Log(#[from] evident_log::Error),
}
