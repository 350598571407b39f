"""The client side of tests/kafka_txn_crash.rs: a confluent-kafka (librdkafka) exactly-once
consume-transform-produce worker that must survive its broker being killed with SIGKILL again
and again, and the checks of what it left behind.

Usage: txn_crash_worker.py MODE BOOTSTRAP N
  fill    creates the topics and writes the input: N records (value = the id 0..N-1, key in-<id>)
          over the 3 partitions of txn-crash-in, idempotent, every delivery acknowledged.
  work    the worker (below); prints one line per step of each transaction on stdout and a JSON
          object last; exits 0 once the group's committed offsets are the input's end.
  verify  reads both outputs back with a read_committed and a read_uncommitted consumer and the
          group's committed offsets; prints one JSON object (the test asserts on it).

The worker: one transactional producer (fixed transactional.id, so each new incarnation's
init_transactions fences the previous one and aborts its open transaction) and one consumer
(assigned, not subscribed: no group membership, so no rebalance waits after a crash; group
txn-crash-group, read_committed, no auto commit). Per transaction it takes 1 to K input records
and writes, for each, TWO records: one to txn-crash-out-a and one to txn-crash-out-b, both keyed
out-<id % KEYS> (so each output stream gets many versions), values JSON {"id", "half", "txn",
"n"} where txn names the transaction attempt (pid-counter) and n its size: every committed
attempt must show exactly n records in each output, all or nothing. Then
send_offsets_to_transaction (the input positions after the batch) and commit_transaction.

Any error (the broker died, a request timed out, a fenced or fatal producer): a retriable
commit is retried a few times; otherwise the transaction is aborted, and if that fails too the
producer is closed and a new one created (init_transactions). Either way the consumer is then
rewound to the group's committed offsets as the broker has them, never to what the worker
believes, because a commit that failed in the client may have been completed by the restarted
coordinator. So a correct broker gives every input exactly one committed pair of outputs.

Lines on stdout (read by the test to kill at chosen steps): `B tag` (begin), `E tag` (commit
called), `C tag n` (committed), `A tag reason` (aborted), `R reason` (a new producer),
`W reason` (rewound). Diagnostics go to stderr.
"""

import faulthandler
import json
import os
import random
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from support import Deadline, check, fail, guard, log, result

INPUT, OUT_A, OUT_B = "txn-crash-in", "txn-crash-out-a", "txn-crash-out-b"
INPUT_PARTITIONS, OUTPUT_PARTITIONS = 3, 2
GROUP, TXN_ID = "txn-crash-group", "txn-crash-worker"
# Most input records per transaction (each transaction takes 1..K).
K = 4
# Output keys: out-0 .. out-(KEYS-1).
KEYS = 40
# Bound of one client call; the broker may be down for a while between kill and restart.
CALL = 20
COMMIT_TRIES = 3
# One transaction in ZOMBIE_EVERY is aborted on purpose, one abandoned open.
ZOMBIE_EVERY = 25

# Reconnect fast after a restart: the defaults back off up to 10 s. And no re-bootstrap when
# every broker is down (the server is dead between kill and restart): librdkafka (2.16) then
# decommissions the known broker, and send_offsets_to_transaction() can hang forever, its
# timeout ignored, when the cached group coordinator was decommissioned (librdkafka issues
# #5511 and #5456, open). The one broker comes back at the same address, so nothing is lost.
CLIENT = {
    "metadata.recovery.strategy": "none",
    "reconnect.backoff.ms": 20,
    "reconnect.backoff.max.ms": 300,
    "retry.backoff.ms": 20,
    "retry.backoff.max.ms": 300,
    "socket.connection.setup.timeout.ms": 5000,
    "topic.metadata.refresh.interval.ms": 1000,
}


def say(*words):
    print(*words, flush=True)


def fill(bootstrap, total):
    topics = [(INPUT, INPUT_PARTITIONS), (OUT_A, OUTPUT_PARTITIONS), (OUT_B, OUTPUT_PARTITIONS)]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for name, future in admin.create_topics([NewTopic(t, n, 1) for t, n in topics]).items():
        future.result(60)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    acked, failed = [0], []

    def on_delivery(err, _msg):
        if err is None:
            acked[0] += 1
        else:
            failed.append(str(err))

    for n in range(total):
        while True:
            try:
                producer.produce(
                    INPUT, key=f"in-{n}".encode(), value=str(n).encode(), partition=n % INPUT_PARTITIONS,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                producer.poll(0.1)
    check(producer.flush(120) == 0, "input deliveries outstanding after flush")
    check(not failed and acked[0] == total, f"input: {acked[0]} acknowledged, failures {failed[:3]}")
    result(filled=total)


def input_ends(total):
    """The input's end offset of each partition (the fill wrote n % 3 to partition n % 3)."""
    return {p: len(range(p, total, INPUT_PARTITIONS)) for p in range(INPUT_PARTITIONS)}


class Worker:
    def __init__(self, bootstrap, total):
        self.bootstrap, self.total = bootstrap, total
        self.ends = input_ends(total)
        self.rng = random.Random(os.getpid())
        self.counter = 0
        self.stats = {"committed_txns": 0, "committed_records": 0, "aborts": 0, "new_producers": 0,
                      "commit_retries": 0, "rewinds": 0, "skipped_stale": 0,
                      "aborts_on_purpose": 0, "abandoned": 0}
        self.producer = None
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": GROUP,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                **CLIENT,
            }
        )
        self.new_producer("start")
        self.rewind("start")

    def new_producer(self, why):
        if self.producer is not None:
            # A fatal producer cannot be reused; its successor's init_transactions fences it.
            self.producer.flush(0)
            self.producer = None
        self.stats["new_producers"] += 1
        say("R", why.replace("\n", " "))
        deadline = Deadline("init_transactions of a new producer", 180)
        while deadline.left():
            p = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "transactional.id": TXN_ID,
                    "transaction.timeout.ms": 30000,
                    "linger.ms": 0,
                    **CLIENT,
                    **({"debug": os.environ["TXN_CRASH_DEBUG"]} if os.environ.get("TXN_CRASH_DEBUG") else {}),
                }
            )
            try:
                p.init_transactions(CALL)
                self.producer = p
                return
            except KafkaException as e:
                log(f"init_transactions: {e}; a new producer")
                p.flush(0)

    def rewind(self, why):
        """Positions the consumer at the group's committed offsets, as the broker has them."""
        self.stats["rewinds"] += 1
        say("W", why.replace("\n", " "))
        parts = [TopicPartition(INPUT, p) for p in range(INPUT_PARTITIONS)]
        deadline = Deadline("the group's committed offsets", 180)
        while deadline.left():
            try:
                committed = self.consumer.committed(parts, CALL)
                break
            except KafkaException as e:
                log(f"committed(): {e}; retrying")
                time.sleep(0.1)
        self.pos = {tp.partition: (tp.offset if tp.offset >= 0 else 0) for tp in committed}
        self.consumer.assign([TopicPartition(INPUT, p, o) for p, o in self.pos.items()])
        self.buffer = []

    def done(self):
        return all(self.pos[p] >= end for p, end in self.ends.items()) and not self.buffer

    def take(self):
        """Up to K input records in order, consuming more when the buffer is short."""
        if len(self.buffer) < K:
            for m in self.consumer.consume(K * 4, 0.1):
                if m.error():
                    if m.error().fatal():
                        fail(f"fatal consumer error: {m.error()}")
                    log(f"consumer: {m.error()}")
                    continue
                self.buffer.append(m)
        batch, expected, size = [], dict(self.pos), self.rng.randint(1, K)
        while self.buffer and len(batch) < size:
            m = self.buffer.pop(0)
            part = m.partition()
            if m.offset() < expected[part]:
                self.stats["skipped_stale"] += 1  # fetched before the last rewind
                continue
            check(m.offset() == expected[part], f"input gap: partition {part} at {m.offset()}, expected {expected[part]}")
            expected[part] = m.offset() + 1
            batch.append(m)
        return batch, expected

    def transaction(self, batch, after):
        self.counter += 1
        tag = f"{os.getpid()}-{self.counter}"
        p = self.producer
        step = "begin"
        try:
            p.begin_transaction()
            say("B", tag)
            step = "produce"
            for m in batch:
                n = int(m.value())
                key = f"out-{n % KEYS}".encode()
                part = (n % KEYS) % OUTPUT_PARTITIONS
                for topic, half in ((OUT_A, "a"), (OUT_B, "b")):
                    value = json.dumps({"id": n, "half": half, "txn": tag, "n": len(batch)})
                    p.produce(topic, key=key, value=value.encode(), partition=part)
            step = "send_offsets"
            offsets = [TopicPartition(INPUT, part, o) for part, o in sorted(after.items())]
            p.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), CALL)
            # Now and then a transaction fails on the worker's side: aborted on purpose, or the
            # producer abandoned with the transaction open, as by a worker crash (the new
            # producer's init_transactions fences it and the coordinator aborts what it left).
            # So aborts and fencing happen under the kills too, and read_uncommitted sees them.
            fault = self.rng.randrange(ZOMBIE_EVERY)
            if fault == 0:
                p.abort_transaction(CALL)
                say("A", tag, "on purpose")
                self.stats["aborts_on_purpose"] += 1
                self.rewind("after an abort on purpose")
                return
            if fault == 1:
                p.flush(CALL)
                self.stats["abandoned"] += 1
                self.new_producer("abandoned an open transaction")
                self.rewind("after abandoning a producer")
                return
            step = "commit"
            say("E", tag)
            for attempt in range(COMMIT_TRIES):
                try:
                    p.commit_transaction(CALL)
                    break
                except KafkaException as e:
                    if not e.args[0].retriable() or attempt + 1 == COMMIT_TRIES:
                        raise
                    self.stats["commit_retries"] += 1
                    log(f"{tag}: commit: {e}; retrying the commit")
            say("C", tag, len(batch))
            self.stats["committed_txns"] += 1
            self.stats["committed_records"] += len(batch)
            self.pos = after
        except (KafkaException, BufferError) as e:
            err = e.args[0] if isinstance(e, KafkaException) else None
            why = f"{step}: {e}"
            log(f"{tag}: {why}")
            self.stats["aborts"] += 1
            if err is not None and err.fatal():
                self.new_producer(why)
            else:
                try:
                    p.abort_transaction(CALL)
                    say("A", tag, step)
                except KafkaException as abort_error:
                    self.new_producer(f"{why}; abort: {abort_error}")
            self.rewind(why)

    def run(self):
        deadline = Deadline("the worker to consume all input", 900)
        while deadline.left():
            if self.done():
                # Done only when the broker agrees: a commit the client saw fail may have won.
                self.rewind("end of input")
                if self.done():
                    break
                continue
            batch, after = self.take()
            if batch:
                self.transaction(batch, after)
        self.consumer.close()
        self.producer.flush(CALL)
        result(**self.stats)


def read_all(bootstrap, topic, isolation):
    """Every record of `topic` up to its end, as (partition, offset, parsed value)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"txn-crash-check-{isolation}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(OUTPUT_PARTITIONS)])
    got, at_end = [], set()
    deadline = Deadline(f"reading {topic} ({isolation})", 180)
    while len(at_end) < OUTPUT_PARTITIONS and deadline.left():
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(m.partition())
                continue
            fail(f"consume error: {m.error()}")
        got.append((m.partition(), m.offset(), json.loads(m.value())))
    c.close()
    return got


def verify(bootstrap, total):
    ids = set(range(total))
    out = {}
    committed_tags = {}
    for topic, half in ((OUT_A, "a"), (OUT_B, "b")):
        committed = read_all(bootstrap, topic, "read_committed")
        uncommitted = read_all(bootstrap, topic, "read_uncommitted")
        seen = [v["id"] for _, _, v in committed]
        check(all(v["half"] == half for _, _, v in committed), f"{topic}: a record of the other half")
        duplicated = len(seen) - len(set(seen))
        lost = sorted(ids - set(seen))
        per_tag = {}
        for _, _, v in committed:
            per_tag.setdefault(v["txn"], []).append(v)
        for tag, records in per_tag.items():
            committed_tags.setdefault(tag, {})[half] = len(records)
            committed_tags[tag]["n"] = records[0]["n"]
        committed_places = {(p, o) for p, o, _ in committed}
        aborted = [v for p, o, v in uncommitted if (p, o) not in committed_places]
        check(
            not any(v["txn"] in per_tag for v in aborted),
            f"{topic}: a record of a committed transaction missing from read_committed",
        )
        out[topic] = {"committed": len(committed), "duplicated": duplicated, "lost": len(lost),
                      "lost_sample": lost[:10], "aborted_records": len(aborted),
                      "aborted_txns": len({v["txn"] for v in aborted})}
    partial = sorted(tag for tag, c in committed_tags.items() if c.get("a") != c["n"] or c.get("b") != c["n"])
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    offsets = c.committed([TopicPartition(INPUT, p) for p in range(INPUT_PARTITIONS)], 60)
    c.close()
    result(
        outputs=out,
        committed_txns=len(committed_tags),
        partial_txns=len(partial),
        partial_sample=partial[:10],
        group_offsets={tp.partition: tp.offset for tp in offsets},
        input_ends=input_ends(total),
    )


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("fill", "work", "verify"):
        fail("usage: txn_crash_worker.py fill|work|verify BOOTSTRAP N")
    mode, bootstrap, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
    guard(1200)
    # The test sends SIGUSR1 to a worker that stopped making steps: its stack says where.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if mode == "fill":
        fill(bootstrap, total)
    elif mode == "work":
        Worker(bootstrap, total).run()
    else:
        verify(bootstrap, total)


if __name__ == "__main__":
    main()
