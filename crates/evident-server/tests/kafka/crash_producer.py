"""The producer side of tests/kafka_crash.rs: a confluent-kafka idempotent producer (acks=all,
enable.idempotence, unbounded retries, a long message timeout) sends N numbered messages, keeping
at most WINDOW of them unacknowledged (so the stream lasts as long as the server takes, and a
kill always finds messages still to send). Each time the acknowledged count crosses one of the
KILL_AT fractions of N it prints `KILL acked=.. produced=..` and goes on producing; the test then
kill -9s the server and restarts it on the same port and data while librdkafka retries. At the
end it waits for every delivery report, reads the whole topic back and prints one JSON object:
produced, acked, failed, read, duplicates, lost (acknowledged but absent).

Usage: crash_producer.py BOOTSTRAP N KILL_AT (comma-separated fractions, e.g. 0.25,0.6)
"""

import sys

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from support import Deadline, check, fail, guard, log, result

TOPIC, PARTITIONS = "crash", 3
# Most messages unacknowledged at any time.
WINDOW = 2000


def main():
    if len(sys.argv) != 4:
        fail("usage: crash_producer.py BOOTSTRAP N KILL_AT")
    bootstrap, total = sys.argv[1], int(sys.argv[2])
    kill_at = [int(float(f) * total) for f in sys.argv[3].split(",")]
    guard(900)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])[TOPIC].result(timeout=60)

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "retries": 2_147_483_647,
            "message.timeout.ms": 120_000,
            "linger.ms": 5,
            "batch.num.messages": 100,
            "reconnect.backoff.max.ms": 1000,
        }
    )
    acked, failed = set(), {}

    def on_delivery(err, msg):
        number = int(msg.value())
        if err is None:
            acked.add(number)
        else:
            failed[number] = str(err)

    produced = 0
    deadline = Deadline("the stream to finish", 600)
    while len(acked) + len(failed) < total and deadline.left():
        while produced < total and produced - len(acked) - len(failed) < WINDOW:
            try:
                producer.produce(
                    TOPIC, key=f"k{produced % 7}".encode(), value=str(produced).encode(), on_delivery=on_delivery
                )
                produced += 1
            except BufferError:
                break
        producer.poll(0.05)
        while kill_at and len(acked) >= kill_at[0]:
            kill_at.pop(0)
            print(f"KILL acked={len(acked)} produced={produced}", flush=True)
    left = producer.flush(300)
    check(left == 0, f"{left} messages without a delivery report after flush")
    log(f"delivery reports: {len(acked)} acked, {len(failed)} failed")

    # Read everything back, by assignment (no group).
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "crash-reader", "enable.auto.commit": False})
    high = sum(consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=60)[1] for p in range(PARTITIONS))
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    seen = []
    deadline = Deadline(f"reading back {high} messages", 120)
    while len(seen) < high and deadline.left():
        m = consumer.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            fail(f"consume error: {m.error()}")
        seen.append(int(m.value()))
    consumer.close()
    distinct = set(seen)
    lost = sorted(acked - distinct)
    result(
        produced=total,
        acked=len(acked),
        failed=len(failed),
        failed_sample=sorted(failed.items())[:5],
        read=len(seen),
        duplicates=len(seen) - len(distinct),
        lost=len(lost),
        lost_sample=lost[:10],
    )


if __name__ == "__main__":
    main()
