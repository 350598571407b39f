"""The bank-account example of shared/seeds/002 (event sourcing with kafka-python), unchanged but
for the bootstrap address (the first argument) and a bounded consumer loop (consumer_timeout_ms),
so that it ends even if an event never arrives. Prints {"balance": ..., "processed": ...}.
"""

import json
import sys

from kafka import KafkaConsumer, KafkaProducer

BOOTSTRAP = sys.argv[1]

# Producer: send events representing deposits and withdrawals
producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, value_serializer=lambda v: json.dumps(v).encode('utf-8'))

# Events to send
events = [
    {'type': 'deposit', 'amount': 100},
    {'type': 'withdrawal', 'amount': 30},
    {'type': 'deposit', 'amount': 50},
]

for event in events:
    producer.send('bank-account-events', value=event)
producer.flush()

# Consumer: read events and rebuild balance
consumer = KafkaConsumer(
    'bank-account-events',
    bootstrap_servers=BOOTSTRAP,
    value_deserializer=lambda m: json.loads(m.decode('utf-8')),
    auto_offset_reset='earliest',
    enable_auto_commit=True,
    group_id='balance-calculator',
    consumer_timeout_ms=60000,
)

balance = 0
processed = 0
for message in consumer:
    event = message.value
    if event['type'] == 'deposit':
        balance += event['amount']
    elif event['type'] == 'withdrawal':
        balance -= event['amount']
    processed += 1
    print(f"Processed event: {event}, Current balance: {balance}")
    if message.offset == 2:  # stop after last event
        break
consumer.close()

print(json.dumps({"balance": balance, "processed": processed}))
