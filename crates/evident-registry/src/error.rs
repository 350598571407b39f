//! The registry's one error type, with the error code and HTTP status Confluent's Schema
//! Registry answers for each condition (its `Errors.java` and `Rest*Exception` classes), so
//! that its clients, which branch on `error_code`, behave the same against evident.
//!
//! Codes: 40401 subject not found, 40402 version not found, 40403 schema not found, 40404
//! subject soft-deleted, 40405 subject not soft-deleted (a permanent delete needs a soft one
//! first), 40406/40407 the same for a version, 40408/40409 no subject-level compatibility /
//! mode, 409 incompatible (Confluent's `RestIncompatibleSchemaException` default code), 42201
//! invalid schema, 42202 invalid version, 42203 invalid compatibility level, 42204 invalid mode,
//! 42205 operation not permitted, 42206 reference exists, 42207 id does not match, 42208
//! invalid subject, 42209 schema too large, 50001 store error. `Corrupted` and
//! `UnsupportedFormat` stop the store's opening (one calls for repair, the other for an
//! upgrade) and are 50001 if ever answered.

use crate::schema::SchemaId;

/// Result alias for the registry.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Everything that can go wrong in the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 40401.
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    /// 40402.
    #[error("Version {version} not found.")]
    VersionNotFound {
        /// The subject.
        subject: String,
        /// The version asked for.
        version: i32,
    },
    /// 40403: no schema with this id, or no version of the subject holds the schema looked up.
    #[error("{}", match .0 { Some(id) => format!("Schema {id} not found"), None => "Schema not found".to_string() })]
    SchemaNotFound(Option<SchemaId>),
    /// 40404: every version of the subject is soft-deleted (a soft delete again is refused).
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    /// 40405: a permanent delete of a subject that still has live versions.
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    /// 40406.
    #[error("Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete permanently")]
    VersionSoftDeleted {
        /// The subject.
        subject: String,
        /// The version.
        version: i32,
    },
    /// 40407.
    #[error("Subject '{subject}' Version {version} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted {
        /// The subject.
        subject: String,
        /// The version.
        version: i32,
    },
    /// 40408.
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectCompatibilityNotConfigured(String),
    /// 40409.
    #[error("Subject '{0}' does not have subject-level mode configured")]
    SubjectModeNotConfigured(String),
    /// 409: the candidate breaks the subject's compatibility level; the reasons say where.
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", .reasons.join(", "))]
    Incompatible {
        /// The subject.
        subject: String,
        /// Why, one per broken rule and version.
        reasons: Vec<String>,
    },
    /// 42201: the schema does not parse, a reference is unknown, cyclic, or of another format.
    #[error("{0}")]
    InvalidSchema(String),
    /// 42202.
    #[error("The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),
    /// 42203.
    #[error("{0}")]
    InvalidCompatibility(String),
    /// 42204.
    #[error("{0}")]
    InvalidMode(String),
    /// 42205: the mode (global or the subject's) forbids the operation.
    #[error("{0}")]
    OperationNotPermitted(String),
    /// 42206: other schemas reference the version being deleted.
    #[error("{0}")]
    ReferenceExists(String),
    /// 42207: in IMPORT mode, the id asked for already holds another schema.
    #[error("{0}")]
    IdDoesNotMatch(String),
    /// 42208.
    #[error("{0}")]
    InvalidSubject(String),
    /// 42209.
    #[error("{0}")]
    SchemaTooLarge(String),
    /// A record of `_schemas` cannot be read although it is our own, checksummed data;
    /// opening stops rather than forget schemas.
    #[error("_schemas is corrupted at offset {offset}: {what}")]
    Corrupted {
        /// Offset of the record in `_schemas`.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A record of `_schemas` was written in a format this version does not know, most
    /// likely by a newer evident; opening stops rather than misread it.
    #[error("_schemas offset {offset} uses a format this version of evident does not read ({what}); upgrade evident")]
    UnsupportedFormat {
        /// Offset of the record in `_schemas`.
        offset: u64,
        /// The unknown version or record kind.
        what: String,
    },
    /// The log refused or failed (I/O, full disk, closed, ...); nothing was acknowledged.
    #[error("Error in the backend data store: {0}")]
    Log(#[from] evident_log::Error),
}

impl RegistryError {
    /// Confluent's `error_code`.
    pub fn error_code(&self) -> u32 {
        match self {
            RegistryError::SubjectNotFound(_) => 40401,
            RegistryError::VersionNotFound { .. } => 40402,
            RegistryError::SchemaNotFound(_) => 40403,
            RegistryError::SubjectSoftDeleted(_) => 40404,
            RegistryError::SubjectNotSoftDeleted(_) => 40405,
            RegistryError::VersionSoftDeleted { .. } => 40406,
            RegistryError::VersionNotSoftDeleted { .. } => 40407,
            RegistryError::SubjectCompatibilityNotConfigured(_) => 40408,
            RegistryError::SubjectModeNotConfigured(_) => 40409,
            RegistryError::Incompatible { .. } => 409,
            RegistryError::InvalidSchema(_) => 42201,
            RegistryError::InvalidVersion(_) => 42202,
            RegistryError::InvalidCompatibility(_) => 42203,
            RegistryError::InvalidMode(_) => 42204,
            RegistryError::OperationNotPermitted(_) => 42205,
            RegistryError::ReferenceExists(_) => 42206,
            RegistryError::IdDoesNotMatch(_) => 42207,
            RegistryError::InvalidSubject(_) => 42208,
            RegistryError::SchemaTooLarge(_) => 42209,
            RegistryError::Corrupted { .. } | RegistryError::UnsupportedFormat { .. } | RegistryError::Log(_) => 50001,
        }
    }

    /// The HTTP status Confluent answers with this error.
    pub fn http_status(&self) -> u16 {
        match self.error_code() {
            409 => 409,
            code => (code / 100) as u16,
        }
    }
}

impl From<crate::parse::ParseError> for RegistryError {
    fn from(e: crate::parse::ParseError) -> Self {
        RegistryError::InvalidSchema(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_are_confluents() {
        let cases: Vec<(RegistryError, u32, u16)> = vec![
            (RegistryError::SubjectNotFound("s".into()), 40401, 404),
            (RegistryError::VersionNotFound { subject: "s".into(), version: 3 }, 40402, 404),
            (RegistryError::SchemaNotFound(Some(SchemaId(7))), 40403, 404),
            (RegistryError::SubjectSoftDeleted("s".into()), 40404, 404),
            (RegistryError::VersionNotSoftDeleted { subject: "s".into(), version: 1 }, 40407, 404),
            (RegistryError::Incompatible { subject: "s".into(), reasons: vec!["r".into()] }, 409, 409),
            (RegistryError::InvalidSchema("x".into()), 42201, 422),
            (RegistryError::ReferenceExists("x".into()), 42206, 422),
            (RegistryError::Corrupted { offset: 1, what: "x".into() }, 50001, 500),
        ];
        for (e, code, status) in cases {
            assert_eq!((e.error_code(), e.http_status()), (code, status), "{e}");
        }
        assert_eq!(
            RegistryError::SubjectNotFound("orders-value".into()).to_string(),
            "Subject 'orders-value' not found."
        );
        assert_eq!(RegistryError::SchemaNotFound(Some(SchemaId(7))).to_string(), "Schema 7 not found");
        assert_eq!(RegistryError::SchemaNotFound(None).to_string(), "Schema not found");
    }
}
