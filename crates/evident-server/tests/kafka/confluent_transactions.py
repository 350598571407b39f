"""Kafka transactions through confluent-kafka (librdkafka), run unchanged against evident and
against Apache Kafka: the two must print the same result.

Usage: confluent_transactions.py BOOTSTRAP PREFIX

Checks, each printing what it saw (offsets included, markers take offsets on both brokers):
- commit and abort: a committed transaction over two partitions, an aborted one, a committed
  one; a read_committed reader sees only the committed records, a read_uncommitted reader also
  the aborted one; the last stable offset equals the high watermark once all ended;
- consume-transform-produce: records read from an input topic are copied to an output topic in
  transactions that also commit the input offsets (send_offsets_to_transaction); one batch is
  aborted midway and redone; the output holds each input exactly once and the group's committed
  offset is the input's end;
- zombie fencing: a second producer with the same transactional id fences the first, whose
  commit then fails with a fatal error; the second's transaction commits.

The last line is one JSON object; a failed check exits non-zero with a message.
"""

import json
import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT = 30


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def create_topics(bootstrap, topics):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for name, future in admin.create_topics([NewTopic(t, n, 1) for t, n in topics]).items():
        future.result(TIMEOUT)


def producer(bootstrap, txn_id):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 0})
    p.init_transactions(TIMEOUT)
    return p


def read_all(bootstrap, topic, partitions, isolation, group):
    """Every record of the topic's partitions up to their end, as (partition, offset, value)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, at_end, polls = [], set(), 0
    while len(at_end) < partitions:
        polls += 1
        if polls > 600:
            fail(f"reading {topic} ({isolation}) did not reach the end: {got}")
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                at_end.add(m.partition())
                continue
            fail(f"consume error: {m.error()}")
        got.append([m.partition(), m.offset(), m.value().decode()])
    ends = [list(c.get_watermark_offsets(TopicPartition(topic, p), TIMEOUT)) for p in range(partitions)]
    c.close()
    return sorted(got), ends


def check_commit_and_abort(bootstrap, prefix):
    topic = f"{prefix}-orders"
    create_topics(bootstrap, [(topic, 2)])
    p = producer(bootstrap, f"{prefix}-tx")
    p.begin_transaction()
    for n in range(3):
        p.produce(topic, key=b"order-1", value=f"created-{n}".encode(), partition=0)
    p.produce(topic, key=b"order-2", value=b"created-9", partition=1)
    p.commit_transaction(TIMEOUT)
    p.begin_transaction()
    p.produce(topic, key=b"order-1", value=b"aborted", partition=0)
    p.flush(TIMEOUT)
    p.abort_transaction(TIMEOUT)
    p.begin_transaction()
    p.produce(topic, key=b"order-1", value=b"paid", partition=0)
    p.commit_transaction(TIMEOUT)
    committed, ends = read_all(bootstrap, topic, 2, "read_committed", f"{prefix}-rc")
    uncommitted, _ = read_all(bootstrap, topic, 2, "read_uncommitted", f"{prefix}-ru")
    values = [r[2] for r in committed]
    if "aborted" in values:
        fail(f"read_committed saw an aborted record: {committed}")
    if "aborted" not in [r[2] for r in uncommitted]:
        fail(f"read_uncommitted did not see the aborted record: {uncommitted}")
    return {"read_committed": committed, "read_uncommitted": uncommitted, "watermarks": ends}


def check_consume_transform_produce(bootstrap, prefix):
    source, sink, group = f"{prefix}-in", f"{prefix}-out", f"{prefix}-copier"
    create_topics(bootstrap, [(source, 1), (sink, 1)])
    plain = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for n in range(30):
        plain.produce(source, key=f"k{n % 3}".encode(), value=f"v{n}".encode())
    plain.flush(TIMEOUT)
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    c.assign([TopicPartition(source, 0, 0)])
    p = producer(bootstrap, f"{prefix}-copier-tx")
    copied, aborted_once, batches, polls = 0, False, 0, 0
    while copied < 30:
        polls += 1
        if polls > 600:
            fail(f"copied only {copied} of 30")
        msgs = [m for m in c.consume(10, 0.5) if not m.error()]
        if not msgs:
            continue
        p.begin_transaction()
        for m in msgs:
            p.produce(sink, key=m.key(), value=m.value().upper())
        if not aborted_once and batches == 1:
            # Abort this batch: its output must never be read, and its input is read again.
            p.abort_transaction(TIMEOUT)
            aborted_once = True
            c.seek(TopicPartition(source, 0, msgs[0].offset()))
            continue
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), TIMEOUT)
        p.commit_transaction(TIMEOUT)
        copied += len(msgs)
        batches += 1
    c.close()
    out, _ = read_all(bootstrap, sink, 1, "read_committed", f"{prefix}-check")
    values = sorted(r[2] for r in out)
    want = sorted(f"V{n}" for n in range(30))
    if values != want:
        fail(f"the output is not each input once: {values}")
    check = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    offsets = check.committed([TopicPartition(source, 0)], TIMEOUT)
    check.close()
    return {"copied": len(values), "aborted_batches": int(aborted_once), "committed_offset": offsets[0].offset}


def check_zombie_fencing(bootstrap, prefix):
    topic = f"{prefix}-fenced"
    create_topics(bootstrap, [(topic, 1)])
    old = producer(bootstrap, f"{prefix}-zombie")
    old.begin_transaction()
    old.produce(topic, key=b"k", value=b"from-the-zombie")
    old.flush(TIMEOUT)
    new = producer(bootstrap, f"{prefix}-zombie")  # fences the first, aborting its transaction
    new.begin_transaction()
    new.produce(topic, key=b"k", value=b"from-the-new-one")
    new.commit_transaction(TIMEOUT)
    fenced = None
    try:
        old.commit_transaction(TIMEOUT)
    except KafkaException as e:
        fenced = {"fatal": e.args[0].fatal(), "name": e.args[0].name()}
    if fenced is None:
        fail("the fenced producer committed")
    committed, _ = read_all(bootstrap, topic, 1, "read_committed", f"{prefix}-fence-check")
    return {"fenced": fenced, "committed": [r[2] for r in committed]}


def main():
    if len(sys.argv) != 3:
        fail("usage: confluent_transactions.py BOOTSTRAP PREFIX")
    bootstrap, prefix = sys.argv[1], sys.argv[2]
    result = {
        "commit_and_abort": check_commit_and_abort(bootstrap, prefix),
        "consume_transform_produce": check_consume_transform_produce(bootstrap, prefix),
        "zombie_fencing": check_zombie_fencing(bootstrap, prefix),
    }
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
