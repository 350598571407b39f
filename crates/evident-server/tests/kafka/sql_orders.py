"""Seed 000's order events and view changelog through confluent-kafka (tests/sql_views.rs).

  sql_orders.py produce BOOTSTRAP FROM TO    produce order events FROM..TO to `order-events`
                                             (acks=all, idempotent, keyed by customer, murmur2
                                             as the topic's partitioner), print {"acked": n}
  sql_orders.py produce-avro BOOTSTRAP REGISTRY FROM TO
                                             the same events as Avro through Confluent's
                                             AvroSerializer (subject order-events-avro-value) to
                                             `order-events-avro`, print {"acked": n}
  sql_orders.py changelog BOOTSTRAP TOPIC    read a view's changelog topic from the start to
                                             its end; print {"rows": {key: row}} (the latest
                                             value per key; tombstones remove it)

Event i: {"eventType": "ItemAdded", "orderId": "order-(i % 101)", "customerId":
"customer-(i % 37)", "item": "item-i", "item_price": 1 + (i * 7) % 50}; the Rust test folds the
same formula.
"""

import json
import sys

from confluent_kafka import Consumer, Producer, TopicPartition

from support import PATIENCE, check, guard, log, result


def order_event(i):
    """Order event i (the formula the Rust test folds)."""
    return {
        "eventType": "ItemAdded",
        "orderId": f"order-{i % 101}",
        "customerId": f"customer-{i % 37}",
        "item": f"item-{i}",
        "item_price": 1 + (i * 7) % 50,
    }


def produce(bootstrap, start, end):
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "partitioner": "murmur2_random",
        "linger.ms": 5,
    })
    acked = [0]
    failed = []

    def done(err, _msg):
        if err is None:
            acked[0] += 1
        else:
            failed.append(str(err))

    for i in range(start, end):
        value = order_event(i)
        producer.produce("order-events", key=f"customer-{i % 37}", value=json.dumps(value), on_delivery=done)
        producer.poll(0)
    left = producer.flush(PATIENCE)
    check(left == 0, f"{left} records not delivered")
    check(not failed, f"delivery failed: {failed[:3]}")
    result(acked=acked[0])


ORDER_AVRO = json.dumps({
    "type": "record",
    "name": "ItemAdded",
    "namespace": "shop",
    "fields": [
        {"name": "eventType", "type": "string"},
        {"name": "orderId", "type": "string"},
        {"name": "customerId", "type": "string"},
        {"name": "item", "type": "string"},
        {"name": "item_price", "type": "long"},
    ],
})


def produce_avro(bootstrap, registry, start, end):
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    serializer = AvroSerializer(SchemaRegistryClient({"url": registry}), ORDER_AVRO)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "partitioner": "murmur2_random"})
    topic = "order-events-avro"
    for i in range(start, end):
        value = order_event(i)
        payload = serializer(value, SerializationContext(topic, MessageField.VALUE))
        producer.produce(topic, key=f"customer-{i % 37}", value=payload)
        producer.poll(0)
    left = producer.flush(PATIENCE)
    check(left == 0, f"{left} records not delivered")
    result(acked=end - start)


def changelog(bootstrap, topic):
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "sql-changelog-reader",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=PATIENCE)
    consumer.assign([TopicPartition(topic, 0, 0)])
    rows = {}
    seen = 0
    while seen < high:
        msg = consumer.poll(PATIENCE)
        check(msg is not None, f"no record within {PATIENCE} s at {seen} of {high}")
        check(msg.error() is None, f"consume error {msg.error()}")
        seen = msg.offset() + 1
        key = msg.key().decode()
        if msg.value() is None:
            rows.pop(key, None)
        else:
            rows[key] = json.loads(msg.value())
    consumer.close()
    log(f"read {seen} changelog records, {len(rows)} rows")
    result(rows=rows, records=seen)


def main():
    guard(240)
    mode, bootstrap = sys.argv[1], sys.argv[2]
    if mode == "produce":
        produce(bootstrap, int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "produce-avro":
        produce_avro(bootstrap, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif mode == "changelog":
        changelog(bootstrap, sys.argv[3])
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
