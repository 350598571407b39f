"""confluent-kafka (librdkafka 2.16) against evident: one check per sub-command.

Usage: confluent_checks.py CHECK BOOTSTRAP, with CHECK one of idempotent, groups, offsets,
admin, expected_version, compression. Prints one JSON object (the figures the Rust test
asserts) as its last stdout line; a failed check exits non-zero with a message.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from support import Deadline, check, fail, guard, log, result

BOOTSTRAP = ""


def producer(**conf):
    """A producer on the server under test."""
    return Producer({"bootstrap.servers": BOOTSTRAP, **conf})


def consumer(group, **conf):
    """A consumer on the server under test (manual commits, from the start by default)."""
    base = {
        "bootstrap.servers": BOOTSTRAP,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    return Consumer({**base, **conf})


def admin():
    """An admin client on the server under test."""
    return AdminClient({"bootstrap.servers": BOOTSTRAP})


def create_topic(name, partitions):
    """Creates a topic through the admin API and waits for the answer."""
    client = admin()
    futures = client.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=30)


def send_all(p, messages):
    """Produces (topic, key, value, extra kwargs) tuples; returns the delivery reports in order.

    Each report is (error or None, partition, offset, key, value)."""
    reports = []

    def on_delivery(err, msg):
        reports.append((err, msg.partition(), msg.offset(), msg.key(), msg.value()))

    for topic, key, value, extra in messages:
        p.produce(topic, key=key, value=value, on_delivery=on_delivery, **extra)
        p.poll(0)
    left = p.flush(90)
    check(left == 0, f"{left} messages still undelivered after flush")
    check(len(reports) == len(messages), f"{len(reports)} delivery reports for {len(messages)} messages")
    return reports


def read_partitions(topic, partitions, count, group="reader"):
    """Reads `count` messages from the start of `partitions` by assignment (no group
    membership); returns (partition, offset, key, value, headers) tuples."""
    c = consumer(group)
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    got = []
    deadline = Deadline(f"{count} messages from {topic}")
    while len(got) < count and deadline.left():
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            fail(f"consume error: {m.error()}")
        got.append((m.partition(), m.offset(), m.key(), m.value(), m.headers()))
    c.close()
    return got


def watermarks(topic, partition):
    """(low, high) watermarks of a partition."""
    c = consumer("watermarks")
    lo_hi = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
    c.close()
    check(lo_hi is not None, f"no watermarks for {topic}[{partition}]")
    return lo_hi


def check_idempotent():
    """(a) An idempotent acks=all producer sends 1000 keyed messages; all are delivered and
    read back once each, in order per key."""
    topic, keys, per_key = "idempotent", 10, 100
    create_topic(topic, 3)
    p = producer(**{"acks": "all", "enable.idempotence": True, "linger.ms": 5})
    messages = [
        (topic, f"k{i % keys}".encode(), f"k{i % keys}-{i // keys}".encode(), {}) for i in range(keys * per_key)
    ]
    reports = send_all(p, messages)
    errors = [r[0] for r in reports if r[0] is not None]
    check(not errors, f"{len(errors)} delivery errors, first: {errors[:1]}")
    total = len(messages)
    got = read_partitions(topic, [0, 1, 2], total)
    high = sum(watermarks(topic, part)[1] for part in range(3))
    check(high == total, f"high watermarks add up to {high}, not {total} (duplicates or losses)")
    per_key_seen = {}
    key_partition = {}
    for part, _offset, key, value, _headers in got:
        seq = int(value.decode().split("-")[1])
        per_key_seen.setdefault(key, []).append(seq)
        check(key_partition.setdefault(key, part) == part, f"key {key} in partitions {key_partition[key]} and {part}")
    for key, seqs in per_key_seen.items():
        check(
            seqs == list(range(per_key)), f"key {key}: read {len(seqs)} values out of order or duplicated: {seqs[:10]}"
        )
    check(len(per_key_seen) == keys, f"read {len(per_key_seen)} keys, not {keys}")
    used = sorted(set(key_partition.values()))
    result(
        delivered=len(reports) - len(errors),
        read=len(got),
        high_watermarks=high,
        keys=len(per_key_seen),
        partitions_used=used,
    )


def poll_both(consumers, seconds=0.2):
    """Polls each consumer once; returns the messages they got, per consumer."""
    out = []
    for c in consumers:
        got = []
        m = c.poll(seconds)
        if m is not None:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    fail(f"consume error: {m.error()}")
            else:
                got.append((m.partition(), m.offset(), m.value().decode()))
        out.append(got)
    return out


def check_groups():
    """(b) A consumer group of two members on two partitions: each gets one partition; one
    leaves and the other takes both; commits hold; a new member resumes after them; the admin
    API lists, describes and deletes the group."""
    topic, group = "grouped", "grp"
    create_topic(topic, 2)
    conf = {"heartbeat.interval.ms": 500, "session.timeout.ms": 30000}
    a, b = consumer(group, **conf), consumer(group, **conf)
    a.subscribe([topic])
    b.subscribe([topic])

    def parts(c):
        return sorted(tp.partition for tp in c.assignment())

    # Both members join; wait until the group settled on one partition each (nothing has been
    # produced yet, so nothing is consumed while it settles).
    deadline = Deadline("both members to get one partition each")
    while deadline.left():
        poll_both([a, b])
        if len(parts(a)) == 1 and len(parts(b)) == 1:
            break
    first = {"a": parts(a), "b": parts(b)}
    check(sorted(first["a"] + first["b"]) == [0, 1], f"assignments {first} do not split the two partitions")
    log("assigned:", first)

    # Ten messages per partition, produced now.
    p = producer(acks="all")
    send_all(p, [(topic, None, f"p{part}-{i}".encode(), {"partition": part}) for part in (0, 1) for i in range(10)])

    got = {"a": [], "b": []}
    deadline = Deadline("each member to read its partition's ten messages")
    while (len(got["a"]) < 10 or len(got["b"]) < 10) and deadline.left():
        ga, gb = poll_both([a, b])
        got["a"] += ga
        got["b"] += gb
    for name, p_ in (("a", first["a"][0]), ("b", first["b"][0])):
        offsets = [(m[0], m[1]) for m in got[name]]
        check(offsets == [(p_, i) for i in range(10)], f"member {name} read {offsets}, not {p_}:0..9")
    a_part, b_part = first["a"][0], first["b"][0]
    # a commits all of its partition; b commits only its first five, then leaves.
    a.commit(offsets=[TopicPartition(topic, a_part, 10)], asynchronous=False)
    b.commit(offsets=[TopicPartition(topic, b_part, 5)], asynchronous=False)
    b.close()

    deadline = Deadline("the remaining member to take both partitions")
    taken_over = []
    while deadline.left():
        (ga,) = poll_both([a])
        taken_over += ga
        if parts(a) == [0, 1]:
            break
    # It resumes b's partition at b's committed offset: exactly 5..9 (and nothing of its own,
    # which it committed in full).
    deadline = Deadline("the remaining member to read 5..9 of the partition it took over")
    while len(taken_over) < 5 and deadline.left():
        (ga,) = poll_both([a])
        taken_over += ga
    offsets = [(m[0], m[1]) for m in taken_over]
    check(offsets == [(b_part, i) for i in range(5, 10)], f"after the rebalance a read {offsets}, not {b_part}:5..9")
    a.commit(offsets=[TopicPartition(topic, 0, 10), TopicPartition(topic, 1, 10)], asynchronous=False)
    committed = a.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=30)
    committed_offsets = [tp.offset for tp in committed]
    check(committed_offsets == [10, 10], f"committed offsets {committed_offsets}, not [10, 10]")
    a.close()

    # Five more per partition; a new member of the group reads only those.
    send_all(p, [(topic, None, f"p{part}-{i}".encode(), {"partition": part}) for part in (0, 1) for i in range(10, 15)])
    c = consumer(group, **conf)
    c.subscribe([topic])
    resumed = []
    deadline = Deadline("the new member to read the ten new messages")
    while len(resumed) < 10 and deadline.left():
        (gc,) = poll_both([c])
        resumed += gc
    c.close()
    for part in (0, 1):
        offsets = [m[1] for m in resumed if m[0] == part]
        check(offsets == list(range(10, 15)), f"the new member read offsets {offsets} of partition {part}, not 10..14")
    # The group as the admin API sees it (ListGroups, DescribeGroups), then deleted (DeleteGroups).
    client = admin()
    listed = client.list_consumer_groups().result(timeout=30)
    groups = {g.group_id: g for g in listed.valid}
    check(group in groups, f"list_consumer_groups: {sorted(groups)} lacks {group}")
    described = client.describe_consumer_groups([group])[group].result(timeout=30)
    state = str(described.state).rsplit(".", 1)[-1]
    check(
        state == "EMPTY" and not described.members,
        f"describe_consumer_groups: state {state}, members {described.members}",
    )
    client.delete_consumer_groups([group])[group].result(timeout=30)
    left = {g.group_id for g in client.list_consumer_groups().result(timeout=30).valid}
    check(group not in left, f"the deleted group is still listed: {sorted(left)}")
    result(
        listed_state=str(groups[group].state).rsplit(".", 1)[-1],
        described_state=state,
        first_assignment=first,
        took_over=offsets_of(taken_over),
        committed=committed_offsets,
        resumed=offsets_of(resumed),
    )


def offsets_of(messages):
    """`partition:offset` strings of consumed messages."""
    return [f"{m[0]}:{m[1]}" for m in messages]


def check_offsets():
    """(c) offsets_for_times finds the first offset at or after a timestamp;
    get_watermark_offsets tells the log's bounds."""
    topic = "timed"
    t0 = int(time.time() * 1000) - 600_000
    p = producer(**{"acks": "all", "linger.ms": 50})
    # Explicit CreateTime timestamps, one second apart; one batch most likely (linger).
    send_all(p, [(topic, b"k", f"v{i}".encode(), {"timestamp": t0 + i * 1000}) for i in range(5)])
    c = consumer("times")
    queries = {
        "before": t0 - 5000,
        "exact_2": t0 + 2000,
        "between_2_3": t0 + 2500,
        "last": t0 + 4000,
        "after": t0 + 60_000,
    }
    found = {}
    for name, ts in queries.items():
        (tp,) = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=30)
        check(tp.error is None, f"offsets_for_times({name}) failed: {tp.error}")
        found[name] = tp.offset
    wm = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
    c.close()
    expected = {"before": 0, "exact_2": 2, "between_2_3": 3, "last": 4, "after": -1}
    check(found == expected, f"offsets_for_times gave {found}, expected {expected}")
    check(tuple(wm) == (0, 5), f"watermarks {wm}, not (0, 5)")
    result(offsets_for_times=found, watermarks=list(wm))


def check_admin():
    """(d) AdminClient: create_topics (3 partitions), describe_configs, delete_topics."""
    topic = "administered"
    a = admin()
    a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=30)
    md = a.list_topics(timeout=30)
    check(topic in md.topics, f"created topic missing from metadata: {sorted(md.topics)}")
    partitions = sorted(md.topics[topic].partitions)
    check(partitions == [0, 1, 2], f"partitions {partitions}, not [0, 1, 2]")
    try:
        a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)
        fail("creating the topic twice succeeded")
    except Exception as e:  # noqa: BLE001 - the KafkaException carries the broker's code
        code = e.args[0].code() if e.args and hasattr(e.args[0], "code") else None
        check(code == KafkaError.TOPIC_ALREADY_EXISTS, f"creating twice failed with {e!r}, not TOPIC_ALREADY_EXISTS")
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = a.describe_configs([resource])[resource].result(timeout=30)
    check("cleanup.policy" in configs, f"describe_configs has no cleanup.policy: {sorted(configs)}")
    cleanup = configs["cleanup.policy"].value
    a.delete_topics([topic], operation_timeout=30)[topic].result(timeout=30)
    deadline = Deadline("the deleted topic to leave the metadata")
    while deadline.left():
        if topic not in a.list_topics(timeout=30).topics:
            break
        time.sleep(0.1)
    result(partitions=partitions, config_names=sorted(configs), cleanup_policy=cleanup, deleted=True)


def check_expected_version():
    """(e) The `evident-expected-version` header: a stale version fails the record with
    INVALID_RECORD; the right one appends; the idempotent producer goes on after the refusal.

    confluent-kafka-python's delivery report carries the code and librdkafka's text for it
    ("Broker: Broker failed to validate record"), not the broker's error message; the message
    itself is checked with kafka-python, which surfaces it (kafka_python_checks.py)."""
    topic, key = "accounts", b"acct-1"
    p = producer(**{"acks": "all", "enable.idempotence": True})
    reports = send_all(p, [(topic, key, b'{"type":"opened"}', {}), (topic, key, b'{"type":"deposited"}', {})])
    check([(r[0], r[2]) for r in reports] == [(None, 0), (None, 1)], f"first appends: {reports}")
    (stale,) = send_all(p, [(topic, key, b'{"type":"stale"}', {"headers": [("evident-expected-version", b"0")]})])
    err = stale[0]
    check(err is not None, f"a stale expected version was appended at offset {stale[2]}")
    check(
        err.code() == KafkaError.INVALID_RECORD,
        f"stale expected version: error {err.code()} ({err.name()}), not INVALID_RECORD",
    )
    (right,) = send_all(p, [(topic, key, b'{"type":"withdrawn"}', {"headers": [("evident-expected-version", b"1")]})])
    check(right[0] is None and right[2] == 2, f"the right expected version: {right}")
    (fresh,) = send_all(
        p, [(topic, b"acct-2", b'{"type":"opened"}', {"headers": [("evident-expected-version", b"no_stream")]})]
    )
    check(fresh[0] is None and fresh[2] == 3, f"no_stream on a new key: {fresh}")
    got = read_partitions(topic, [0], 4)
    values = [m[3].decode() for m in got]
    check(all("stale" not in v for v in values), f"the refused record was stored: {values}")
    high = watermarks(topic, 0)[1]
    check(high == 4, f"high watermark {high}, not 4")
    result(
        stale_code=err.code(),
        stale_name=err.name(),
        stale_text=err.str(),
        right_offset=right[2],
        values=values,
        high_watermark=high,
    )


def check_compression():
    """(f) Batches compressed with gzip, snappy, lz4 and zstd read back identical."""
    out = {}
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        topic = f"compressed-{codec}"
        p = producer(**{"acks": "all", "compression.type": codec, "linger.ms": 20})
        sent = [
            (f"k{i % 4}".encode(), (f"{codec} event {i} " * (1 + i % 7)).encode() + bytes([i % 256]) * 40)
            for i in range(200)
        ]
        reports = send_all(p, [(topic, k, v, {}) for k, v in sent])
        check(all(r[0] is None for r in reports), f"{codec}: delivery errors {[r[0] for r in reports if r[0]][:1]}")
        got = read_partitions(topic, [0], len(sent))
        check([(m[2], m[3]) for m in got] == sent, f"{codec}: read back differs from what was sent")
        check([m[1] for m in got] == list(range(len(sent))), f"{codec}: offsets {[m[1] for m in got][:10]}...")
        out[codec] = len(got)
    result(read_back=out)


CHECKS = {
    "idempotent": check_idempotent,
    "groups": check_groups,
    "offsets": check_offsets,
    "admin": check_admin,
    "expected_version": check_expected_version,
    "compression": check_compression,
}


def main():
    global BOOTSTRAP
    if len(sys.argv) != 3 or sys.argv[1] not in CHECKS:
        fail(f"usage: confluent_checks.py {{{'|'.join(CHECKS)}}} BOOTSTRAP")
    BOOTSTRAP = sys.argv[2]
    guard(300)
    CHECKS[sys.argv[1]]()


if __name__ == "__main__":
    main()
