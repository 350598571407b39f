//! ApiVersions: the table of APIs and versions evident serves (the first request of every
//! client).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::handler::{Ctx, ErrorCodes, Served};

fn table(served: &[Served]) -> Vec<ApiVersion> {
    served
        .iter()
        .map(|s| ApiVersion::default().with_api_key(s.key as i16).with_min_version(s.min).with_max_version(s.max))
        .collect()
}

/// The reply to an ApiVersions request newer than evident speaks.
pub fn unsupported_version(served: &[Served]) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_error_code(ResponseError::UnsupportedVersion.code()).with_api_keys(table(served))
}

/// Handles ApiVersions.
pub async fn handle(ctx: &Ctx<'_>, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(table(ctx.served))
}

impl ErrorCodes for ApiVersionsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}
