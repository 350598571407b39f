//! The expected-version rule of optimistic concurrency: an append states where it believes the
//! stream is, and the store appends only if that is true. The four forms and their names follow
//! EventStoreDB/KurrentDB (`any`, `no_stream`, `stream_exists`, an exact revision).

use std::fmt;
use std::str::FromStr;

use crate::ids::Version;

/// Where an appender expects a stream to be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must hold no event yet.
    NoStream,
    /// The stream must hold at least one event.
    StreamExists,
    /// The stream's last event must be at exactly this version.
    Exact(Version),
}

/// A string that is not an expected version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid expected version {0:?}: use any, no_stream, stream_exists or a decimal version")]
pub struct ParseExpectedVersionError(pub String);

impl ExpectedVersion {
    /// Whether a stream whose last event is at `current` (None: no event) satisfies `self`.
    pub fn is_satisfied_by(self, current: Option<Version>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::StreamExists => current.is_some(),
            ExpectedVersion::Exact(v) => current == Some(v),
        }
    }
}

impl FromStr for ExpectedVersion {
    type Err = ParseExpectedVersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "any" => Ok(Self::Any),
            "no_stream" => Ok(Self::NoStream),
            "stream_exists" => Ok(Self::StreamExists),
            // Only plain decimal digits: "+1", " 1" and "1e3" are typos, not versions.
            digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits
                .parse::<u64>()
                .map(|v| Self::Exact(Version(v)))
                .map_err(|_| ParseExpectedVersionError(s.to_string())),
            _ => Err(ParseExpectedVersionError(s.to_string())),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no_stream"),
            ExpectedVersion::StreamExists => f.write_str("stream_exists"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_forms_and_refuses_the_rest() {
        assert_eq!("any".parse(), Ok(ExpectedVersion::Any));
        assert_eq!("no_stream".parse(), Ok(ExpectedVersion::NoStream));
        assert_eq!("stream_exists".parse(), Ok(ExpectedVersion::StreamExists));
        assert_eq!("17".parse(), Ok(ExpectedVersion::Exact(Version(17))));
        for bad in ["", "-1", "+1", " 1", "1e3", "ANY", "99999999999999999999999"] {
            assert!(bad.parse::<ExpectedVersion>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn satisfaction_table() {
        let none = None;
        let at3 = Some(Version(3));
        assert!(ExpectedVersion::Any.is_satisfied_by(none));
        assert!(ExpectedVersion::Any.is_satisfied_by(at3));
        assert!(ExpectedVersion::NoStream.is_satisfied_by(none));
        assert!(!ExpectedVersion::NoStream.is_satisfied_by(at3));
        assert!(!ExpectedVersion::StreamExists.is_satisfied_by(none));
        assert!(ExpectedVersion::StreamExists.is_satisfied_by(at3));
        assert!(ExpectedVersion::Exact(Version(3)).is_satisfied_by(at3));
        assert!(!ExpectedVersion::Exact(Version(2)).is_satisfied_by(at3));
        assert!(!ExpectedVersion::Exact(Version(0)).is_satisfied_by(none));
    }
}
