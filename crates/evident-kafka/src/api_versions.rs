//! ApiVersions: the table of APIs and versions evident serves (the first request of every
//! client).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::dispatch::{Ctx, SUPPORTED};

fn table() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|&(key, lo, hi)| ApiVersion::default().with_api_key(key as i16).with_min_version(lo).with_max_version(hi))
        .collect()
}

/// The reply to an ApiVersions request newer than evident speaks.
pub fn unsupported_version() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_error_code(ResponseError::UnsupportedVersion.code()).with_api_keys(table())
}

/// Handles ApiVersions.
pub async fn handle(_ctx: &Ctx<'_>, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(table())
}
