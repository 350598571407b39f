"""Broker-side schema validation seen by confluent-kafka (librdkafka): creates a topic with
confluent.value.schema.validation=true through the AdminClient, then produces wire-format
records (magic byte 0, 4-byte big-endian schema id, JSON) to it. Prints one JSON object: the
topic's described configs, the outcome of a batch mixing a valid and an invalid record (both
refused), of an unframed record, and of a valid record alone (stored).

Usage: registry_validation.py BOOTSTRAP TOPIC SCHEMA_ID HTTP_TOPIC

HTTP_TOPIC is only created, with validation on, for the HTTP appends the test makes.
"""

import json
import struct
import sys

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic


def framed(schema_id, value):
    return b"\x00" + struct.pack(">i", schema_id) + json.dumps(value).encode()


def produce(bootstrap, topic, values):
    """Produces `values` in one batch (a long linger, one flush); returns each outcome."""
    outcomes = [None] * len(values)

    def report(i):
        def cb(err, msg):
            if err is None:
                outcomes[i] = {"offset": msg.offset()}
            else:
                outcomes[i] = {"error": err.name(), "message": err.str()}

        return cb

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 200, "enable.idempotence": False, "retries": 0})
    for i, v in enumerate(values):
        p.produce(topic, key=b"order-1", value=v, partition=0, on_delivery=report(i))
    p.flush(30)
    return outcomes


def main():
    bootstrap, topic, schema_id, http_topic = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    on = {"confluent.value.schema.validation": "true"}
    new = [NewTopic(t, num_partitions=1, replication_factor=1, config=on) for t in (topic, http_topic)]
    for f in admin.create_topics(new).values():
        f.result(30)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    described = admin.describe_configs([resource])[resource].result(30)
    configs = {k: v.value for k, v in described.items() if k.startswith("confluent.")}
    good = framed(schema_id, {"order_id": "o-1", "amount": 5})
    bad = framed(schema_id, {"order_id": "o-2", "amount": "five"})
    result = {
        "configs": configs,
        "mixed": produce(bootstrap, topic, [good, bad]),
        "unframed": produce(bootstrap, topic, [json.dumps({"order_id": "o-3", "amount": 1}).encode()]),
        "good": produce(bootstrap, topic, [good]),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    try:
        main()
    except KafkaException as e:
        sys.exit(f"registry_validation: {e}")
