//! The gate every request frame passes, sans IO: the 8 fixed bytes of the header (API key,
//! version, correlation id), the table of served APIs and versions, then the header itself.
//! `dispatch` runs it on every frame from a socket, and [`decode_request`] (the fuzz target
//! `fuzz/fuzz_targets/kafka_request.rs`, the hostile-input tests) runs it followed by the same
//! body decoder routing uses, so the fuzzer exercises the production path. Every byte here
//! comes from a peer: refuse, never panic.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

use crate::api;

/// A frame that passed the gate.
#[derive(Debug)]
pub enum Gated {
    /// A served API at a served version, its header decoded; the body is still raw.
    Request {
        /// The API.
        key: ApiKey,
        /// Its version.
        version: i16,
        /// The decoded request header.
        header: RequestHeader,
        /// The request body.
        body: Bytes,
    },
    /// An ApiVersions newer than evident speaks: answered (KIP-511), not refused.
    ApiVersionsTooNew {
        /// The version asked.
        version: i16,
        /// The request's correlation id.
        correlation_id: i32,
    },
}

/// Gates a request frame (without its size prefix). Errors say why the frame closes the
/// connection.
pub fn gate(mut frame: Bytes) -> Result<Gated, String> {
    if frame.len() < 8 {
        return Err(format!("a request of {} bytes is shorter than any request header", frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| format!("unknown API key {raw_key}"))?;
    let served = api::served(key).ok_or_else(|| format!("API {key:?} (key {raw_key}) is not served by evident"))?;
    if key == ApiKey::ApiVersions && version > served.max {
        return Ok(Gated::ApiVersionsTooNew { version, correlation_id });
    }
    if !served.serves(version) {
        return Err(format!("{key:?} v{version} is not served (evident serves v{} to v{})", served.min, served.max));
    }
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version))
        .map_err(|e| format!("malformed request header: {e}"))?;
    Ok(Gated::Request { key, version, header, body: frame })
}

/// What a frame decoded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The API.
    pub key: ApiKey,
    /// Its version.
    pub version: i16,
}

/// Decodes a request frame (without its size prefix) as the server would before handling it:
/// the gate, then the body at the frame's version. Errors say why the frame would close a
/// connection.
pub fn decode_request(frame: &[u8]) -> Result<Decoded, String> {
    match gate(Bytes::copy_from_slice(frame))? {
        Gated::ApiVersionsTooNew { version, .. } => Ok(Decoded { key: ApiKey::ApiVersions, version }),
        Gated::Request { key, version, body, .. } => {
            api::decode(key, version, body)?;
            Ok(Decoded { key, version })
        }
    }
}

/// Checks a produced batch the way Produce does (CRC, records, decompression within a budget
/// of `decompressed_max` bytes), without a log: for the fuzz target.
pub fn check_batch(bytes: &[u8], decompressed_max: usize) -> bool {
    let mut budget = crate::records::Budget::new(decompressed_max, usize::MAX);
    crate::records::to_stored(bytes, &mut budget)
        .is_ok_and(|b| evident_core::batch::RecordBatch::parse_exact(&b).is_ok_and(|rb| rb.validate_records().is_ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::MetadataRequest;
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
        // A too-new ApiVersions passes the gate: the server answers it with its table.
        assert_eq!(
            decode_request(&[0, 18, 0, 99, 0, 0, 0, 1]).expect("answered"),
            Decoded { key: ApiKey::ApiVersions, version: 99 }
        );
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
        fn random_bodies_never_panic(idx in 0usize..api::SERVED.len(), version_pick in 0i16..20, tail in proptest::collection::vec(any::<u8>(), 0..512)) {
            let served = api::SERVED[idx];
            let (key, version) = (served.key, served.min + version_pick % (served.max - served.min + 1));
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
