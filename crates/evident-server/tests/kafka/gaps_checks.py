"""confluent-kafka (librdkafka) against evident: the gaps librdkafka's own test suite found
(issue 12, part 4), one check per sub-command, each the behaviour Apache Kafka shows.

Usage: gaps_checks.py CHECK BOOTSTRAP. Prints one JSON object (the figures the Rust test,
tests/kafka_gaps.rs, asserts) as its last stdout line; a failed check exits non-zero.
"""

import sys

from confluent_kafka import KafkaError, TopicPartition

import confluent_checks as cc
from support import Deadline, check, fail, guard, result


def check_offset_reset():
    """A group whose committed offset is past the log's end: the Fetch answers
    OFFSET_OUT_OF_RANGE, and with auto.offset.reset=earliest the consumer starts again from
    the first record instead of stalling."""
    topic, group = "reset", "resetter"
    cc.create_topic(topic, 1)
    cc.send_all(cc.producer(acks="all"), [(topic, b"k", f"v{i}".encode(), {}) for i in range(3)])
    committer = cc.consumer(group)
    committer.commit(offsets=[TopicPartition(topic, 0, 100)], asynchronous=False)
    committer.close()
    c = cc.consumer(group, **{"auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    deadline = Deadline("the consumer to reset to the earliest offset")
    while len(got) < 3 and deadline.left():
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            fail(f"consume error: {m.error()}")
        got.append(m.offset())
    c.close()
    result(offsets=got)


CHECKS = {
    "offset_reset": check_offset_reset,
}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in CHECKS:
        fail(f"usage: gaps_checks.py {{{'|'.join(CHECKS)}}} BOOTSTRAP")
    cc.BOOTSTRAP = sys.argv[2]
    guard(300)
    CHECKS[sys.argv[1]]()


if __name__ == "__main__":
    main()
