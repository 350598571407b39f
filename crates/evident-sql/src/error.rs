//! What can go wrong with a SQL request, each with a stable code for the HTTP API's error body
//! and the status it maps to. Errors found while parsing or planning are reported before any
//! state changes: a bad statement never creates half a view.

/// Result of this crate.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

/// A SQL error.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The text does not parse.
    #[error("syntax error at line {line}, column {column}: {message}{}", hint.as_ref().map(|h| format!(" (hint: {h})")).unwrap_or_default())]
    Syntax {
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
        /// What the parser expected and found.
        message: String,
        /// A suggestion, when one applies.
        hint: Option<String>,
    },
    /// A statement or clause evident does not run.
    #[error("{0}")]
    Unsupported(String),
    /// A column, function or argument that does not fit (unknown column, SUM of a string).
    #[error("{0}")]
    Invalid(String),
    /// The source topic does not exist.
    #[error("unknown topic {0:?}: create it first, or produce to it (FROM names a topic or a view)")]
    UnknownTopic(String),
    /// No view by that name.
    #[error("unknown view {0:?} (SHOW TABLES lists the views)")]
    UnknownView(String),
    /// CREATE of a name that exists.
    #[error("{0}")]
    Exists(String),
    /// DROP of a view another view reads.
    #[error("cannot drop {view:?}: {dependent:?} reads it (drop {dependent:?} first)")]
    InUse {
        /// The view to drop.
        view: String,
        /// A view whose source it is.
        dependent: String,
    },
    /// A pull query's `min_sequence` was not reached in time.
    #[error("view {view:?} has applied up to sequence {position}, not yet {wanted}, after waiting {waited_ms} ms")]
    NotCaughtUp {
        /// The view.
        view: String,
        /// Its position.
        position: u64,
        /// The sequence asked for.
        wanted: u64,
        /// How long the query waited.
        waited_ms: u64,
    },
    /// A view stopped on an error (its state is not served until it is rebuilt).
    #[error("view {view:?} is stopped: {reason}")]
    ViewFailed {
        /// The view.
        view: String,
        /// Why.
        reason: String,
    },
    /// The result would exceed the answer's bounds.
    #[error("{0}")]
    TooLarge(String),
    /// The log refused or failed.
    #[error(transparent)]
    Log(#[from] evident_log::Error),
    /// A view's changelog or the catalog holds something this version cannot read.
    #[error("{0}")]
    Corrupted(String),
}

impl SqlError {
    /// The stable code for the HTTP error body.
    pub fn code(&self) -> &'static str {
        match self {
            SqlError::Syntax { .. } => "sql_syntax",
            SqlError::Unsupported(_) => "sql_unsupported",
            SqlError::Invalid(_) => "sql_invalid",
            SqlError::UnknownTopic(_) => "unknown_topic",
            SqlError::UnknownView(_) => "unknown_view",
            SqlError::Exists(_) => "view_exists",
            SqlError::InUse { .. } => "view_in_use",
            SqlError::NotCaughtUp { .. } => "not_caught_up",
            SqlError::ViewFailed { .. } => "view_failed",
            SqlError::TooLarge(_) => "result_too_large",
            SqlError::Log(_) => "storage",
            SqlError::Corrupted(_) => "corrupted",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            SqlError::Syntax { .. } => 400,
            SqlError::Unsupported(_) | SqlError::Invalid(_) => 422,
            SqlError::UnknownTopic(_) | SqlError::UnknownView(_) => 404,
            SqlError::Exists(_) | SqlError::InUse { .. } => 409,
            SqlError::NotCaughtUp { .. } => 503,
            SqlError::ViewFailed { .. } => 503,
            SqlError::TooLarge(_) => 413,
            SqlError::Log(_) | SqlError::Corrupted(_) => 500,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> SqlError {
        SqlError::Invalid(msg.into())
    }

    pub(crate) fn unsupported(msg: impl Into<String>) -> SqlError {
        SqlError::Unsupported(msg.into())
    }
}
