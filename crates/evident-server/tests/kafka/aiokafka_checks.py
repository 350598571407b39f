"""aiokafka 0.14 (asyncio) against evident: an idempotent acks=all producer, then a consumer
group that commits, and a second member of the group that resumes after the commit.

Usage: aiokafka_checks.py BOOTSTRAP. Prints one JSON object as its last stdout line; a failed
check exits non-zero with a message.
"""

import asyncio
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from support import PATIENCE, check, fail, guard, log, result

TOPIC, GROUP = "aio-events", "aio-group"


async def produce(bootstrap, first, count):
    """Sends `count` keyed messages numbered from `first`; returns their offsets."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        offsets = []
        for i in range(first, first + count):
            meta = await producer.send_and_wait(TOPIC, key=f"k{i % 3}".encode(), value=f"event-{i}".encode())
            offsets.append(meta.offset)
        return offsets
    finally:
        await producer.stop()


async def consume(bootstrap, count):
    """Joins the group, reads `count` messages, commits them and leaves; returns
    (offsets read, committed offset)."""
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=GROUP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        got = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PATIENCE
        while len(got) < count:
            if loop.time() > deadline:
                fail(f"read {len(got)} of {count} messages within {PATIENCE} s")
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                got += [m.offset for m in messages]
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(TOPIC, 0))
        return got, committed
    finally:
        await consumer.stop()


async def run(bootstrap):
    sent = await produce(bootstrap, 0, 20)
    check(sent == list(range(20)), f"produced at offsets {sent}")
    first, committed = await consume(bootstrap, 20)
    check(first == list(range(20)), f"the first member read {first}")
    check(committed == 20, f"committed {committed}, not 20")
    more = await produce(bootstrap, 20, 5)
    check(more == list(range(20, 25)), f"produced at offsets {more}")
    second, committed2 = await consume(bootstrap, 5)
    check(second == list(range(20, 25)), f"the next member read {second}, not 20..24 (re-delivery or gap)")
    check(committed2 == 25, f"committed {committed2}, not 25")
    log("aiokafka: produced 25, read 20 then 5, committed 25")
    result(produced=len(sent) + len(more), first=len(first), resumed=second, committed=committed2)


def main():
    if len(sys.argv) != 2:
        fail("usage: aiokafka_checks.py BOOTSTRAP")
    guard(300)
    asyncio.run(run(sys.argv[1]))


if __name__ == "__main__":
    main()
