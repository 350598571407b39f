//! The consumer-protocol decoders against values built as Kafka's clients build them, and
//! against random and truncated bytes (the CI stand-in for the fuzz target): they refuse,
//! never panic, and never allocate more than the input could describe.

use proptest::prelude::*;

use super::*;

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn topic_partitions(out: &mut Vec<u8>, tps: &[(&str, &[i32])]) {
    out.extend_from_slice(&(tps.len() as i32).to_be_bytes());
    for (topic, partitions) in tps {
        string(out, topic);
        out.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
        for p in *partitions {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
}

/// An assignment as the Java client's `ConsumerProtocol.serializeAssignment` writes it.
pub(crate) fn assignment(tps: &[(&str, &[i32])]) -> Vec<u8> {
    let mut b = 0i16.to_be_bytes().to_vec();
    topic_partitions(&mut b, tps);
    b.extend_from_slice(&(-1i32).to_be_bytes()); // null user data
    b
}

/// A subscription at `version` (0–3), as the Java client writes it.
fn subscription(version: i16, topics: &[&str], owned: &[(&str, &[i32])]) -> Vec<u8> {
    let mut b = version.to_be_bytes().to_vec();
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        string(&mut b, t);
    }
    b.extend_from_slice(&3i32.to_be_bytes());
    b.extend_from_slice(b"udt");
    if version >= 1 {
        topic_partitions(&mut b, owned);
    }
    if version >= 2 {
        b.extend_from_slice(&7i32.to_be_bytes()); // generation
    }
    if version >= 3 {
        string(&mut b, "rack-a");
    }
    b
}

#[test]
fn assignments_decode() {
    let decoded = decode_assignment(&assignment(&[("orders", &[2, 0])])).expect("decodes");
    assert_eq!(decoded.len(), 1);
    assert_eq!(decoded[0].topic.as_str(), "orders");
    assert_eq!(decoded[0].partitions, [2, 0]);
    assert!(decode_assignment(&[]).is_none());
    assert!(decode_assignment(&assignment(&[("orders", &[-1])])).is_none());
    // A count larger than the bytes that follow is refused before allocating.
    let mut huge = vec![0, 0];
    huge.extend_from_slice(&i32::MAX.to_be_bytes());
    assert!(decode_assignment(&huge).is_none());
    let bad_name = decode_assignment(&assignment(&[("not a topic!", &[1])])).expect("decodes");
    assert!(bad_name.is_empty(), "topics evident cannot hold are skipped");
}

#[test]
fn subscriptions_decode_at_every_version() {
    for version in 0..=3 {
        let s = decode_subscription(&subscription(version, &["orders", "payments"], &[("orders", &[1])]))
            .unwrap_or_else(|| panic!("v{version} decodes"));
        assert_eq!(s.topics, ["orders", "payments"]);
        let owned = if version >= 1 { vec![("orders".to_string(), vec![1])] } else { Vec::new() };
        assert_eq!(s.owned, owned, "v{version}");
    }
    assert!(decode_subscription(&[0xff, 0xff, 0, 0, 0, 0]).is_none(), "negative version");
    let mut huge = vec![0, 0];
    huge.extend_from_slice(&i32::MAX.to_be_bytes());
    assert!(decode_subscription(&huge).is_none(), "count beyond the bytes");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random bytes never panic either decoder.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_assignment(&bytes);
        let _ = decode_subscription(&bytes);
    }

    /// A valid value round-trips, and no prefix of one panics either decoder.
    #[test]
    fn valid_values_round_trip_and_prefixes_never_panic(
        topics in proptest::collection::vec(("[a-z]{1,12}", proptest::collection::vec(0i32..1000, 0..8)), 0..5),
        version in 0i16..=3,
    ) {
        let tps: Vec<(&str, &[i32])> = topics.iter().map(|(t, p)| (t.as_str(), p.as_slice())).collect();
        let names: Vec<&str> = tps.iter().map(|(t, _)| *t).collect();
        let a = assignment(&tps);
        let decoded = decode_assignment(&a).expect("decodes");
        let got: Vec<(String, Vec<u32>)> = decoded.into_iter().map(|t| (t.topic.as_str().to_string(), t.partitions)).collect();
        let want: Vec<(String, Vec<u32>)> = topics.iter().map(|(t, p)| (t.clone(), p.iter().map(|&x| x as u32).collect())).collect();
        prop_assert_eq!(got, want);
        let s = subscription(version, &names, &tps);
        prop_assert_eq!(decode_subscription(&s).expect("decodes").topics, names.iter().map(|n| n.to_string()).collect::<Vec<_>>());
        for cut in 0..a.len() {
            let _ = decode_assignment(&a[..cut]);
        }
        for cut in 0..s.len() {
            let _ = decode_subscription(&s[..cut]);
        }
    }
}
