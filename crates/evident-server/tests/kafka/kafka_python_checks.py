"""kafka-python 3.x against evident, beyond the bank-account example (bank_account.py).

Usage: kafka_python_checks.py CHECK BOOTSTRAP, with CHECK one of:
- expected_version: a stale `evident-expected-version` header is refused with INVALID_RECORD and
  evident's error message (kafka-python surfaces the ProduceResponse `error_message`); the right
  version appends.
- offsets_for_times: ListOffsets by time answers the first offset at or after the time together
  with that record's timestamp (kafka-python surfaces both; librdkafka only the offset).
Prints one JSON object as its last stdout line; a failed check exits non-zero with a message.
"""

import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import InvalidRecordError

from support import check, fail, guard, result


def check_expected_version(bootstrap):
    """The conflict's code and message, through a real client."""
    topic, key = "ledger", b"acct-7"
    # Not idempotent: kafka-python's idempotent producer treats any refused batch as fatal and
    # refuses every later send (a client policy; librdkafka bumps the epoch and goes on).
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    offsets = [p.send(topic, key=key, value=b"opened").get(timeout=60).offset]
    offsets.append(p.send(topic, key=key, value=b"deposited").get(timeout=60).offset)
    check(offsets == [0, 1], f"first appends at {offsets}")
    try:
        stale = p.send(topic, key=key, value=b"stale", headers=[("evident-expected-version", b"0")]).get(timeout=60)
        fail(f"a stale expected version was appended at offset {stale.offset}")
    except InvalidRecordError as e:
        message = str(e)
    check("wrong expected version" in message, f"message {message!r} does not say 'wrong expected version'")
    check(f"{topic}/{key.decode()}" in message, f"message {message!r} does not name the stream")
    check("stream is at 1" in message, f"message {message!r} does not give the stream's version")
    right = p.send(topic, key=key, value=b"withdrawn", headers=[("evident-expected-version", b"1")]).get(timeout=60)
    check(right.offset == 2, f"the right expected version appended at {right.offset}, not 2")
    p.close()
    result(stale_message=message, right_offset=right.offset)


def check_offsets_for_times(bootstrap):
    """Offsets and timestamps by time, on records one second apart (explicit CreateTime)."""
    topic = "timeline"
    t0 = int(time.time() * 1000) - 600_000
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=50)
    for i in range(5):
        p.send(topic, key=b"k", value=f"v{i}".encode(), timestamp_ms=t0 + i * 1000)
    p.flush(timeout=60)
    p.close()
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    tp = TopicPartition(topic, 0)
    found = {}
    for name, ts in {"exact_2": t0 + 2000, "between_2_3": t0 + 2500, "before": t0 - 5000}.items():
        answer = c.offsets_for_times({tp: ts})[tp]
        check(answer is not None, f"offsets_for_times({name}) found nothing")
        found[name] = [answer.offset, answer.timestamp - t0]
    after = c.offsets_for_times({tp: t0 + 60_000})[tp]
    c.close()
    # [offset, the found record's timestamp - t0]
    expected = {"exact_2": [2, 2000], "between_2_3": [3, 3000], "before": [0, 0]}
    check(found == expected, f"offsets_for_times gave {found}, expected {expected} ([offset, record timestamp - t0])")
    check(after is None, f"a time after every record gave {after}")
    result(found=found)


CHECKS = {"expected_version": check_expected_version, "offsets_for_times": check_offsets_for_times}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in CHECKS:
        fail(f"usage: kafka_python_checks.py {{{'|'.join(CHECKS)}}} BOOTSTRAP")
    guard(300)
    CHECKS[sys.argv[1]](sys.argv[2])


if __name__ == "__main__":
    main()
