"""A live Kafka consumer group seen and guarded by evident's HTTP API (issue #3's "refused while
the group has active members", with members that joined over the Kafka protocol).

Usage: group_admin.py BOOTSTRAP HTTP_BASE. A confluent-kafka consumer joins group `ledger-view`
and consumes; while it is a member, `GET /v1/groups/ledger-view` must show it with its
partition, and executing an offset reset or deleting the group must be refused with 409
`group_not_empty` (a plan without `execute` is still allowed). After the consumer closes (it
leaves the group), the reset executes and moves the committed offset back to the start.
"""

import json
import sys
import time
import urllib.error
import urllib.request

from confluent_kafka import Consumer, Producer

from support import PATIENCE, check, guard, log, result

TOPIC = "ledger"
GROUP = "ledger-view"


def http(method, url, body=None):
    """One HTTP request; returns (status, parsed JSON or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read()
            return resp.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, (json.loads(text) if text else None)


def main():
    bootstrap, base = sys.argv[1], sys.argv[2]
    guard(int(PATIENCE * 3))
    status, _ = http("POST", f"{base}/v1/topics", {"name": TOPIC, "partitions": 1})
    check(status == 201, f"create topic: {status}")
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(5):
        producer.produce(TOPIC, key=f"acct-{i}", value=f"entry-{i}")
    check(producer.flush(30) == 0, "produce did not finish")

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": GROUP,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,
    })
    consumer.subscribe([TOPIC])
    seen = 0
    deadline = time.time() + PATIENCE
    while seen < 5 and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            seen += 1
    check(seen == 5, f"consumed {seen} of 5")
    consumer.commit(asynchronous=False)

    status, group = http("GET", f"{base}/v1/groups/{GROUP}")
    check(status == 200, f"describe: {status} {group}")
    log("group while active:", group)
    members = group["members"]
    check(group["state"] == "Stable" and len(members) == 1, f"one active member: {group}")
    assigned = [(a["topic"], a["partitions"]) for a in members[0]["assignment"]]
    check(assigned == [(TOPIC, [0])], f"the member holds {TOPIC}/0: {assigned}")
    committed = {(o["topic"], o["partition"]): o["committed_offset"] for o in group["offsets"]}
    check(committed.get((TOPIC, 0)) == 5, f"committed 5: {committed}")

    reset = {"topics": [TOPIC], "to_earliest": True}
    status, plan = http("POST", f"{base}/v1/groups/{GROUP}/reset-offsets", reset)
    check(status == 200 and plan["executed"] is False, f"a plan is allowed while active: {status} {plan}")
    status, refused = http("POST", f"{base}/v1/groups/{GROUP}/reset-offsets", dict(reset, execute=True))
    check(status == 409 and refused["error"]["code"] == "group_not_empty", f"execute refused: {status} {refused}")
    status, refused_delete = http("DELETE", f"{base}/v1/groups/{GROUP}")
    check(status == 409 and refused_delete["error"]["code"] == "group_not_empty", f"delete refused: {status}")
    status, refused_commit = http("POST", f"{base}/v1/groups/{GROUP}/offsets",
                                  {"offsets": [{"topic": TOPIC, "partition": 0, "offset": 1}]})
    check(status == 409, f"an outside commit is refused while members consume: {status} {refused_commit}")

    consumer.close()  # leaves the group
    deadline = time.time() + PATIENCE
    while True:
        status, done = http("POST", f"{base}/v1/groups/{GROUP}/reset-offsets", dict(reset, execute=True))
        if status == 200 or time.time() > deadline:
            break
        time.sleep(0.2)
    check(status == 200 and done["executed"] is True, f"reset after leave: {status} {done}")
    status, after = http("GET", f"{base}/v1/groups/{GROUP}")
    check(after["state"] == "Empty" and after["members"] == [], f"empty after leave: {after}")
    offsets = {(o["topic"], o["partition"]): o["committed_offset"] for o in after["offsets"]}
    result(member=members[0]["member_id"], refused=refused["error"]["code"], after_reset=offsets.get((TOPIC, 0)),
           lag=after["total_lag"])


if __name__ == "__main__":
    main()
