//! Decoding a request frame without handling it: the sans-IO half of `dispatch`, used by the
//! fuzz target (`fuzz/fuzz_targets/kafka_request.rs`) and the hostile-input tests. Every byte
//! here comes from a peer, so it must refuse, never panic or allocate unboundedly.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use crate::dispatch::supported;

/// What a frame decoded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The API.
    pub key: ApiKey,
    /// Its version.
    pub version: i16,
}

/// Decodes a request frame (without its size prefix): header and body, at the frame's
/// version, for every API evident serves. Errors say why the frame would close a connection.
pub fn decode_request(frame: &[u8]) -> Result<Decoded, String> {
    if frame.len() < 8 {
        return Err(format!("{} bytes is shorter than a request header", frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| format!("unknown API key {raw_key}"))?;
    let (lo, hi) = supported(key).ok_or_else(|| format!("API {key:?} is not served"))?;
    if version < lo || version > hi {
        return Err(format!("{key:?} v{version} is not served"));
    }
    let mut buf = Bytes::copy_from_slice(frame);
    RequestHeader::decode(&mut buf, key.request_header_version(version)).map_err(|e| e.to_string())?;
    macro_rules! body {
        ($t:ty) => {
            <$t>::decode(&mut buf, version).map(|_| ()).map_err(|e| e.to_string())
        };
    }
    match key {
        ApiKey::ApiVersions => body!(ApiVersionsRequest),
        ApiKey::Metadata => body!(MetadataRequest),
        ApiKey::Produce => body!(ProduceRequest),
        ApiKey::Fetch => body!(FetchRequest),
        ApiKey::ListOffsets => body!(ListOffsetsRequest),
        ApiKey::InitProducerId => body!(InitProducerIdRequest),
        ApiKey::CreateTopics => body!(CreateTopicsRequest),
        ApiKey::DeleteTopics => body!(DeleteTopicsRequest),
        ApiKey::DescribeConfigs => body!(DescribeConfigsRequest),
        ApiKey::CreatePartitions => body!(CreatePartitionsRequest),
        ApiKey::OffsetCommit => body!(OffsetCommitRequest),
        ApiKey::OffsetFetch => body!(OffsetFetchRequest),
        ApiKey::FindCoordinator => body!(FindCoordinatorRequest),
        ApiKey::JoinGroup => body!(JoinGroupRequest),
        ApiKey::Heartbeat => body!(HeartbeatRequest),
        ApiKey::LeaveGroup => body!(LeaveGroupRequest),
        ApiKey::SyncGroup => body!(SyncGroupRequest),
        ApiKey::DescribeGroups => body!(DescribeGroupsRequest),
        ApiKey::ListGroups => body!(ListGroupsRequest),
        ApiKey::DeleteGroups => body!(DeleteGroupsRequest),
        other => Err(format!("API {other:?} has no decoder here")),
    }?;
    Ok(Decoded { key, version })
}

/// Checks a produced batch the way Produce does (CRC, records, bounded decompression),
/// without a log: for the fuzz target.
pub fn check_batch(bytes: &[u8], decompressed_max: usize) -> bool {
    crate::records::to_stored(bytes, decompressed_max)
        .is_ok_and(|b| evident_core::batch::RecordBatch::parse_exact(&b).is_ok_and(|rb| rb.validate_records().is_ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use proptest::prelude::*;

    fn frame(key: ApiKey, version: i16, body: &impl Encodable) -> Vec<u8> {
        let mut out = bytes::BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("t")))
            .encode(&mut out, key.request_header_version(version))
            .expect("header");
        body.encode(&mut out, version).expect("body");
        out.to_vec()
    }

    #[test]
    fn real_requests_decode_and_bad_ones_are_refused() {
        let ok = frame(ApiKey::Metadata, 9, &MetadataRequest::default());
        assert_eq!(decode_request(&ok).expect("decodes"), Decoded { key: ApiKey::Metadata, version: 9 });
        assert!(decode_request(&ok[..ok.len() - 1]).is_err() || ok.len() < 9);
        assert!(decode_request(&[0, 3, 0, 99, 0, 0, 0, 1]).unwrap_err().contains("not served"));
        assert!(decode_request(&[3, 231, 0, 0, 0, 0, 0, 1]).unwrap_err().contains("unknown API key"));
        assert!(decode_request(&[0, 1]).is_err());
    }

    #[test]
    fn a_huge_array_count_fails_to_decode_instead_of_aborting() {
        // DeleteGroups v1 (header v1: correlation id, null client id) whose group-name array
        // claims i32::MAX entries: the codec reserves that many before reading one. A random
        // body of the proptest below once hit exactly this (a 45 GB reservation).
        let mut f = vec![0, 42, 0, 1, 0, 0, 0, 7, 0xff, 0xff];
        f.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_request(&f).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        /// Random bytes after a valid key and version never panic the decoder.
        #[test]
        fn random_bodies_never_panic(idx in 0usize..20, version_pick in 0i16..20, tail in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (key, lo, hi) = crate::dispatch::SUPPORTED[idx % crate::dispatch::SUPPORTED.len()];
            let version = lo + version_pick % (hi - lo + 1);
            let mut f = Vec::new();
            f.extend_from_slice(&(key as i16).to_be_bytes());
            f.extend_from_slice(&version.to_be_bytes());
            f.extend_from_slice(&tail);
            let _ = decode_request(&f);
        }

        /// Random batches never panic the produce-side checks.
        #[test]
        fn random_batches_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = check_batch(&bytes, 1 << 20);
        }
    }
}
