#!/usr/bin/env python3
"""Confluent's own Python clients, unchanged, against a schema registry (and a Kafka port).

    confluent_suite.py <registry url> <kafka bootstrap | -> [--only PREFIX ...] [--reference apicurio]

Drives confluent-kafka's SchemaRegistryClient and its Avro, JSON Schema and Protobuf serializers
and deserializers exactly as an application would: the seeds' OrderPlaced event (order id,
customer, line items with prices, total, timestamp) serialized, produced to the Kafka port,
consumed and deserialized in each format; schema evolution accepted and refused per compatibility
level (set per subject with set_compatibility), with the client's SchemaRegistryError carrying
Confluent's documented error codes; an old reader schema reading data written with a new one;
lookup, versions, soft and permanent deletes, latest version, and references between subjects.

Each check prints one line, `PASS <name>: <detail>` or `FAIL <name>: <detail>`; the exit status
is non-zero when any check fails. With the bootstrap '-' the produce/consume checks are skipped
(`SKIP`), the registry checks still run. Every check uses subjects and topics of its own, named
with a per-run prefix, so checks are independent (--only runs a subset) and a registry can be
reused across runs.

`--reference apicurio` marks the checks listed in KNOWN_DIFFERENCES['apicurio'] as `XFAIL`
(expected to fail, with the reason) instead of `FAIL`: Apicurio Registry is a real, independent
implementation of Confluent's API, and where it departs from Confluent's documented behaviour
the departure is recorded there, keyed by check name. A known difference that passes prints
`XPASS` (not a failure, but the list should then be trimmed).
"""

import argparse
import datetime
import json
import sys
import time
import traceback
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import (
    Schema,
    SchemaReference,
    SchemaRegistryClient,
    SchemaRegistryError,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

# Where a reference registry departs from Confluent's documented behaviour: check name -> reason.
# A check listed here is expected to fail against that registry (XFAIL), and must pass on evident.
APICURIO_PROTO_SERIALIZED = (
    "Apicurio answers GET /schemas/ids/{id}?format=serialized (the ProtobufDeserializer's fetch of the "
    "writer schema) with HTTP 500 for a schema registered as a base64 FileDescriptorProto; Confluent "
    "returns the serialized descriptor"
)
KNOWN_DIFFERENCES = {
    "apicurio": {
        "registry.invalid_version_42202": "Apicurio answers version 0 with HTTP 404 / 40402 (version not "
        "found); Confluent checks the version id first and answers HTTP 422 / 42202 (invalid version)",
        "delete.soft_deleted_version_readable": "Apicurio answers GET /subjects/{s}/versions/1?deleted=true of "
        "a soft-deleted subject with 40401 (its ?deleted=true list of versions works); Confluent returns the "
        "deleted version",
        "delete.permanent_needs_soft_40405": "Apicurio refuses with HTTP 409 (error_code 40405); Confluent's "
        "subjectNotSoftDeletedException is HTTP 404",
        "delete.version_permanent_needs_soft_40407": "Apicurio refuses with HTTP 409 (error_code 40407); "
        "Confluent's schemaVersionNotSoftDeletedException is HTTP 404",
        "registry.readonly_mode_refuses_42205": "Apicurio stores and reports a subject's READONLY mode but "
        "still registers new versions under it; Confluent refuses with HTTP 422 / 42205 (operation not "
        "permitted)",
        # One cause for the three: the deserializer asks GET /schemas/ids/{id}?format=serialized,
        # and Apicurio parses a schema registered as a base64 FileDescriptorProto (as this client's
        # ProtobufSerializer registers it) as .proto text: HTTP 500 "Syntax error in ...proto:1:1".
        "protobuf.kafka.round_trip": APICURIO_PROTO_SERIALIZED,
        "protobuf.kafka.old_reader_reads_new_data": APICURIO_PROTO_SERIALIZED,
        "protobuf.kafka.references_round_trip": APICURIO_PROTO_SERIALIZED,
    },
}

# ---------------------------------------------------------------------------------------------
# The seeds' OrderPlaced event (shared/seeds/000: eventType, orderId, customerId, items,
# timestamp), with line items carrying a price and the order its total.

TIMESTAMP = datetime.datetime(2024, 4, 10, 10, 30, 0, tzinfo=datetime.timezone.utc)
ITEMS = [
    {"sku": "BOOK-42", "quantity": 2, "price": 12.5},
    {"sku": "PEN-7", "quantity": 1, "price": 3.25},
]


def order(order_id="123", **extra):
    event = {
        "orderId": order_id,
        "customerId": "456",
        "items": [dict(i) for i in ITEMS],
        "total": 28.25,
        "timestamp": TIMESTAMP,
    }
    event.update(extra)
    return event


AVRO_LINE_ITEM = {
    "type": "record",
    "name": "LineItem",
    "fields": [
        {"name": "sku", "type": "string"},
        {"name": "quantity", "type": "int"},
        {"name": "price", "type": "double"},
    ],
}


def avro_order(extra_fields=(), drop=(), items=None):
    fields = [
        {"name": "orderId", "type": "string"},
        {"name": "customerId", "type": "string"},
        {"name": "items", "type": {"type": "array", "items": items or AVRO_LINE_ITEM}},
        {"name": "total", "type": "double"},
        {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ]
    fields = [f for f in fields if f["name"] not in drop] + list(extra_fields)
    return json.dumps(
        {"type": "record", "name": "OrderPlaced", "namespace": "com.example.orders", "fields": fields}
    )


AVRO_V1 = avro_order()
# Backward (and forward) compatible: a new optional field with a default.
AVRO_COUPON = {"name": "coupon", "type": ["null", "string"], "default": None}
AVRO_V2 = avro_order([AVRO_COUPON])
# A new field without a default: new readers cannot read old data (not backward compatible),
# old readers ignore it (forward compatible).
AVRO_REQUIRED_CHANNEL = avro_order([{"name": "channel", "type": "string"}])
# A field removed that old readers need and that has no default: not forward compatible.
AVRO_NO_CUSTOMER = avro_order(drop=("customerId",))


def json_order(extra_props=None, drop=(), required_extra=(), closed=True, total_type="number"):
    props = {
        "orderId": {"type": "string"},
        "customerId": {"type": "string"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "sku": {"type": "string"},
                    "quantity": {"type": "integer"},
                    "price": {"type": "number"},
                },
                "required": ["sku", "quantity", "price"],
            },
        },
        "total": {"type": total_type},
        "timestamp": {"type": "string", "format": "date-time"},
    }
    for name in drop:
        props.pop(name)
    props.update(extra_props or {})
    required = [n for n in ("orderId", "customerId", "items", "total", "timestamp") if n not in drop]
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "OrderPlaced",
        "type": "object",
        "properties": props,
        "required": required + list(required_extra),
    }
    if closed:
        schema["additionalProperties"] = False
    return json.dumps(schema)


def json_event(**extra):
    # JSON has no timestamp type: the seeds' ISO-8601 string.
    event = order(**extra)
    event["timestamp"] = "2024-04-10T10:30:00Z"
    return event


# ---------------------------------------------------------------------------------------------
# Protobuf message classes, built at run time from a FileDescriptorProto (no generated code in
# the repository): package evident.orders, OrderPlaced with repeated LineItem and a
# google.protobuf.Timestamp (a well-known import the serializer does not register: the registry
# must know it).

FDP = descriptor_pb2.FieldDescriptorProto


def _field(msg, name, number, ftype, label=FDP.LABEL_OPTIONAL, type_name=None):
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name
    return f


def proto_file(variant="v1", file_name="evident/order_placed.proto", with_line_item=True):
    """A FileDescriptorProto for OrderPlaced. variant: v1; v2 (adds coupon = 6); bad (order_id
    becomes int64, an incompatible change of a field's type)."""
    fd = descriptor_pb2.FileDescriptorProto(name=file_name, package="evident.orders", syntax="proto3")
    fd.dependency.append("google/protobuf/timestamp.proto")
    if with_line_item:
        li = fd.message_type.add(name="LineItem")
        _field(li, "sku", 1, FDP.TYPE_STRING)
        _field(li, "quantity", 2, FDP.TYPE_INT32)
        _field(li, "price", 3, FDP.TYPE_DOUBLE)
    m = fd.message_type.add(name="OrderPlaced")
    _field(m, "order_id", 1, FDP.TYPE_INT64 if variant == "bad" else FDP.TYPE_STRING)
    _field(m, "customer_id", 2, FDP.TYPE_STRING)
    _field(m, "items", 3, FDP.TYPE_MESSAGE, FDP.LABEL_REPEATED, ".evident.orders.LineItem")
    _field(m, "total", 4, FDP.TYPE_DOUBLE)
    _field(m, "timestamp", 5, FDP.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp")
    if variant == "v2":
        _field(m, "coupon", 6, FDP.TYPE_STRING)
    return fd


def proto_classes(*files):
    """Message classes for the given FileDescriptorProtos (in dependency order), each set in a
    pool of its own so that two versions of one file can coexist. Returns {full name: class}."""
    pool = descriptor_pool.DescriptorPool()
    ts = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(ts)
    pool.Add(ts)
    for fd in files:
        pool.Add(fd)
    out = {}
    for fd in files:
        for m in fd.message_type:
            full = f"{fd.package}.{m.name}"
            out[full] = message_factory.GetMessageClass(pool.FindMessageTypeByName(full))
    return out


def proto_order(classes, **extra):
    cls = classes["evident.orders.OrderPlaced"]
    msg = cls(order_id="123", customer_id="456", total=28.25, **extra)
    for i in ITEMS:
        msg.items.add(sku=i["sku"], quantity=i["quantity"], price=i["price"])
    msg.timestamp.FromDatetime(TIMESTAMP)
    return msg


# ---------------------------------------------------------------------------------------------
# The harness.


class Fail(Exception):
    pass


class Skip(Exception):
    pass


def expect(cond, detail):
    if not cond:
        raise Fail(detail)


def expect_error(fn, http, code, what):
    """fn() must raise SchemaRegistryError with this HTTP status and Confluent error code."""
    try:
        got = fn()
    except SchemaRegistryError as e:
        if e.http_status_code != http or e.error_code != code:
            raise Fail(
                f"{what}: expected HTTP {http} / error_code {code}, got HTTP {e.http_status_code} / "
                f"error_code {e.error_code}: {e.error_message}"
            )
        return e
    raise Fail(f"{what}: expected HTTP {http} / error_code {code}, but it succeeded: {got!r}")


class Suite:
    def __init__(self, url, bootstrap, only, reference):
        self.url = url
        self.bootstrap = None if bootstrap == "-" else bootstrap
        self.only = only
        self.known = KNOWN_DIFFERENCES.get(reference, {}) if reference else {}
        self.client = self.fresh_client()
        self.run = uuid.uuid4().hex[:8]
        self.failed = 0
        self.counts = {}

    def name(self, what):
        """A subject or topic name of this run."""
        return f"cs-{self.run}-{what}"

    def fresh_client(self):
        # The client caches ids, schemas and latest versions: a check that must see the
        # registry's answer (not the cache) asks through a client of its own.
        # The client's HTTP timeout is unset (no limit) by default: a registry that never answers
        # would hang the suite, so each request gets 30 s (a hang guard, far above any answer).
        return SchemaRegistryClient({"url": self.url, "timeout": 30})

    # Kafka ------------------------------------------------------------------------------------

    def need_kafka(self):
        if self.bootstrap is None:
            raise Skip("no Kafka bootstrap given ('-')")

    def topic(self, what):
        self.need_kafka()
        topic = self.name(what)
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        fs = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)], operation_timeout=30)
        for f in fs.values():
            f.result(timeout=60)
        return topic

    def produce(self, topic, values):
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True})
        errors = []

        def report(err, _msg):
            if err is not None:
                errors.append(str(err))

        for v in values:
            p.produce(topic, key=b"123", value=v, on_delivery=report)
        left = p.flush(30)
        expect(left == 0 and not errors, f"produce to {topic}: {left} undelivered, errors {errors}")

    def consume(self, topic, count):
        c = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.name("group-" + topic),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
            out = []
            deadline = time.monotonic() + 30
            while len(out) < count and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is None:
                    continue
                expect(m.error() is None, f"consume {topic}: {m.error()}")
                out.append(m.value())
            expect(len(out) == count, f"consume {topic}: {len(out)} of {count} records within 30 s")
            return out
        finally:
            c.close()

    def through_kafka(self, topic, serialize, deserialize, values):
        """Serialize each value, produce, consume, deserialize: the values that came back."""
        ctx = SerializationContext(topic, MessageField.VALUE)
        self.produce(topic, [serialize(v, ctx) for v in values])
        return [deserialize(raw, ctx) for raw in self.consume(topic, len(values))]

    # Running ----------------------------------------------------------------------------------

    def run_checks(self, checks):
        for name, fn in checks:
            if self.only and not any(name.startswith(p) for p in self.only):
                continue
            reason = self.known.get(name)
            started = time.monotonic()
            try:
                detail = fn(self) or ""
                status = "XPASS" if reason else "PASS"
                if reason:
                    detail += f" (listed as a known difference: {reason})"
            except Skip as e:
                status, detail = "SKIP", str(e)
            except Fail as e:
                status, detail = ("XFAIL", f"{e} (known difference: {reason})") if reason else ("FAIL", str(e))
            except Exception as e:  # any other exception is a failure of the check, with its trace
                tb = traceback.format_exc(limit=4).strip().replace("\n", " | ")
                text = f"{type(e).__name__}: {e} [{tb}]"
                status, detail = ("XFAIL", f"{text} (known difference: {reason})") if reason else ("FAIL", text)
            self.counts[status] = self.counts.get(status, 0) + 1
            if status == "FAIL":
                self.failed += 1
            print(f"{status} {name}: {detail} [{time.monotonic() - started:.1f} s]", flush=True)


CHECKS = []


def check(name):
    def wrap(fn):
        CHECKS.append((name, fn))
        return fn

    return wrap


# ---------------------------------------------------------------------------------------------
# Registry: types, registration, identity, lookup.


@check("registry.schema_types")
def _(s):
    types = s.client.get_schema_types()
    expect(set(types) >= {"AVRO", "JSON", "PROTOBUF"}, f"schemas/types: {types}")
    return f"{sorted(types)}"


@check("registry.register_idempotent")
def _(s):
    subject = s.name("ident-value")
    id1 = s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    # The same schema again (a fresh client, so the registry answers, not the cache): same id,
    # no new version.
    id2 = s.fresh_client().register_schema(subject, Schema(AVRO_V1, "AVRO"))
    versions = s.client.get_versions(subject)
    expect(id1 == id2, f"same schema registered twice: ids {id1} and {id2}")
    expect(versions == [1], f"versions after registering one schema twice: {versions}")
    return f"id {id1}, versions {versions}"


@check("registry.same_schema_same_id_across_subjects")
def _(s):
    a = s.client.register_schema(s.name("shared-a-value"), Schema(AVRO_V1, "AVRO"))
    b = s.client.register_schema(s.name("shared-b-value"), Schema(AVRO_V1, "AVRO"))
    expect(a == b, f"one schema in two subjects: ids {a} and {b} (Confluent: one id per schema)")
    subjects = s.fresh_client().get_subjects_by_schema_id(a)
    mine = sorted(x for x in subjects if x.startswith(s.name("shared-")))
    expect(mine == [s.name("shared-a-value"), s.name("shared-b-value")], f"schemas/ids/{a}/subjects: {subjects}")
    return f"id {a} in {mine}"


@check("registry.schema_versions_by_id")
def _(s):
    a, b = s.name("sv-a-value"), s.name("sv-b-value")
    sid = s.client.register_schema(a, Schema(AVRO_V1, "AVRO"))
    s.client.register_schema(b, Schema(AVRO_V1, "AVRO"))
    pairs = sorted((v.subject, v.version) for v in s.fresh_client().get_schema_versions(sid) if v.subject in (a, b))
    expect(pairs == [(a, 1), (b, 1)], f"schemas/ids/{sid}/versions: {pairs}")
    return f"id {sid}: {pairs}"


@check("registry.avro_formatting_is_not_identity")
def _(s):
    # Confluent compares Avro schemas parsed, not as text: the same schema pretty-printed is the
    # same schema (same id, no new version), without asking for normalization.
    subject = s.name("pretty-value")
    sid = s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    pretty = json.dumps(json.loads(AVRO_V1), indent=2)
    again = s.fresh_client().register_schema(subject, Schema(pretty, "AVRO"))
    versions = s.client.get_versions(subject)
    expect(again == sid and versions == [1], f"pretty-printed: id {again} (was {sid}), versions {versions}")
    return f"id {sid}, versions {versions}"


@check("registry.global_compatibility_backward")
def _(s):
    # Confluent's default level; the suite never changes the global level, so this holds on a
    # registry it shares with other runs too.
    level = s.fresh_client().get_compatibility()
    expect(level == "BACKWARD", f"global compatibility {level!r}")
    return level


@check("registry.readonly_mode_refuses_42205")
def _(s):
    subject = s.name("readonly-value")
    s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    c = s.fresh_client()
    c.update_mode(subject, "READONLY")
    expect(c.get_mode(subject) == "READONLY", f"mode {c.get_mode(subject)!r}")
    expect_error(lambda: c.register_schema(subject, Schema(AVRO_V2, "AVRO")), 422, 42205, "register in READONLY mode")
    c.update_mode(subject, "READWRITE")
    c.register_schema(subject, Schema(AVRO_V2, "AVRO"))
    expect(c.get_versions(subject) == [1, 2], f"versions {c.get_versions(subject)}")
    return "READONLY refused a registration; READWRITE accepted it"


@check("registry.get_schema_by_id")
def _(s):
    subject = s.name("byid-value")
    sid = s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    got = s.fresh_client().get_schema(sid)
    expect(got.schema_type in ("AVRO", None), f"schema type {got.schema_type}")
    expect(json.loads(got.schema_str) == json.loads(AVRO_V1), f"schema {sid} text differs: {got.schema_str}")
    return f"id {sid}"


@check("registry.get_schema_unknown_id_40403")
def _(s):
    expect_error(lambda: s.fresh_client().get_schema(987654321), 404, 40403, "GET schemas/ids/987654321")


@check("registry.lookup_schema")
def _(s):
    subject = s.name("lookup-value")
    sid = s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    s.client.set_compatibility(subject, "NONE")
    sid2 = s.client.register_schema(subject, Schema(AVRO_V2, "AVRO"))
    c = s.fresh_client()
    r1 = c.lookup_schema(subject, Schema(AVRO_V1, "AVRO"))
    r2 = c.lookup_schema(subject, Schema(AVRO_V2, "AVRO"))
    expect((r1.schema_id, r1.version, r1.subject) == (sid, 1, subject), f"lookup v1: {r1}")
    expect((r2.schema_id, r2.version, r2.subject) == (sid2, 2, subject), f"lookup v2: {r2}")
    return f"v1 id {sid}, v2 id {sid2}"


@check("registry.lookup_schema_not_registered_40403")
def _(s):
    subject = s.name("lookup-miss-value")
    s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    expect_error(
        lambda: s.fresh_client().lookup_schema(subject, Schema(AVRO_NO_CUSTOMER, "AVRO")),
        404,
        40403,
        "lookup of a schema not in the subject",
    )


@check("registry.lookup_schema_unknown_subject_40401")
def _(s):
    expect_error(
        lambda: s.fresh_client().lookup_schema(s.name("never-value"), Schema(AVRO_V1, "AVRO")),
        404,
        40401,
        "lookup in an unknown subject",
    )


@check("registry.get_versions_and_latest")
def _(s):
    subject = s.name("versions-value")
    s.client.set_compatibility(subject, "BACKWARD")
    id1 = s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    id2 = s.client.register_schema(subject, Schema(AVRO_V2, "AVRO"))
    c = s.fresh_client()
    versions = c.get_versions(subject)
    latest = c.get_latest_version(subject)
    v1 = c.get_version(subject, 1)
    expect(versions == [1, 2], f"versions {versions}")
    expect((latest.version, latest.schema_id, latest.subject) == (2, id2, subject), f"latest {latest}")
    expect(json.loads(latest.schema.schema_str) == json.loads(AVRO_V2), f"latest schema {latest.schema.schema_str}")
    expect((v1.version, v1.schema_id) == (1, id1), f"version 1: {v1}")
    return f"versions {versions}, latest v{latest.version} id {latest.schema_id}"


@check("registry.unknown_subject_40401")
def _(s):
    c = s.fresh_client()
    expect_error(lambda: c.get_latest_version(s.name("nope-value")), 404, 40401, "latest of an unknown subject")
    expect_error(lambda: c.get_versions(s.name("nope-value")), 404, 40401, "versions of an unknown subject")


@check("registry.unknown_version_40402")
def _(s):
    subject = s.name("nover-value")
    s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    expect_error(lambda: s.fresh_client().get_version(subject, 99), 404, 40402, "version 99 of a 1-version subject")


@check("registry.invalid_version_42202")
def _(s):
    subject = s.name("badver-value")
    s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    expect_error(lambda: s.fresh_client().get_version(subject, 0), 422, 42202, "version 0")


@check("registry.invalid_avro_42201")
def _(s):
    bad = '{"type":"record","name":"OrderPlaced","fields":[{"name":"total","type":"decimalish"}]}'
    expect_error(
        lambda: s.client.register_schema(s.name("badavro-value"), Schema(bad, "AVRO")),
        422,
        42201,
        "an Avro schema naming an unknown type",
    )


@check("registry.invalid_json_schema_42201")
def _(s):
    expect_error(
        lambda: s.client.register_schema(s.name("badjson-value"), Schema('{"type": 12}', "JSON")),
        422,
        42201,
        "a JSON Schema whose type is a number",
    )


@check("registry.invalid_protobuf_42201")
def _(s):
    bad = 'syntax = "proto3"; message OrderPlaced { string order_id = 1; Missing m = 2; }'
    expect_error(
        lambda: s.client.register_schema(s.name("badproto-value"), Schema(bad, "PROTOBUF")),
        422,
        42201,
        "a .proto naming an unknown type",
    )


@check("registry.compatibility_get_set")
def _(s):
    subject = s.name("compat-value")
    s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    got = s.client.set_compatibility(subject, "FULL_TRANSITIVE")
    back = s.fresh_client().get_compatibility(subject)
    expect(back == "FULL_TRANSITIVE", f"set FULL_TRANSITIVE, read back {back!r} (set answered {got!r})")
    return f"set -> {got!r}, get -> {back!r}"


@check("registry.compatibility_invalid_42203")
def _(s):
    expect_error(
        lambda: s.client.set_compatibility(s.name("compat-bad-value"), "SIDEWAYS"),
        422,
        42203,
        "compatibility level SIDEWAYS",
    )


# ---------------------------------------------------------------------------------------------
# Avro: evolution per compatibility level.


def evolve(s, label, level, first, then, accepted, schema_type="AVRO"):
    subject = s.name(f"{label}-value")
    s.client.set_compatibility(subject, level)
    s.client.register_schema(subject, Schema(first, schema_type))
    c = s.fresh_client()
    verdict = c.test_compatibility(subject, Schema(then, schema_type))
    if accepted:
        expect(verdict is True, f"{level}: test_compatibility said {verdict!r}, expected True")
        sid = c.register_schema(subject, Schema(then, schema_type))
        versions = c.get_versions(subject)
        expect(versions == [1, 2], f"{level}: versions after the accepted change {versions}")
        return f"{level}: compatible, registered as version 2 (id {sid})"
    expect(verdict is False, f"{level}: test_compatibility said {verdict!r}, expected False")
    e = expect_error(lambda: c.register_schema(subject, Schema(then, schema_type)), 409, 409, f"{level} register")
    versions = c.get_versions(subject)
    expect(versions == [1], f"{level}: versions after the refused change {versions}")
    return f"{level}: refused with 409: {e.error_message[:120]}"


@check("avro.compat.backward_accepts_optional_field")
def _(s):
    return evolve(s, "avro-bw-ok", "BACKWARD", AVRO_V1, AVRO_V2, True)


@check("avro.compat.backward_refuses_required_field")
def _(s):
    return evolve(s, "avro-bw-no", "BACKWARD", AVRO_V1, AVRO_REQUIRED_CHANNEL, False)


@check("avro.compat.forward_accepts_required_field")
def _(s):
    return evolve(s, "avro-fw-ok", "FORWARD", AVRO_V1, AVRO_REQUIRED_CHANNEL, True)


@check("avro.compat.forward_refuses_removed_field")
def _(s):
    return evolve(s, "avro-fw-no", "FORWARD", AVRO_V1, AVRO_NO_CUSTOMER, False)


@check("avro.compat.full_refuses_required_field")
def _(s):
    return evolve(s, "avro-full-no", "FULL", AVRO_V1, AVRO_REQUIRED_CHANNEL, False)


@check("avro.compat.none_accepts_anything")
def _(s):
    return evolve(s, "avro-none", "NONE", AVRO_V1, avro_order(drop=("items", "total")), True)


@check("avro.compat.backward_transitive_checks_all_versions")
def _(s):
    # v1 has channel: string (default "web"); v2 drops it; v3 brings it back as an int (default
    # 0). v3 reads v2's data (no channel: the default), so plain BACKWARD accepts it; v3 cannot
    # read v1's data (a string where it wants an int), so BACKWARD_TRANSITIVE refuses it.
    subject = s.name("avro-bwt-value")
    s.client.set_compatibility(subject, "BACKWARD_TRANSITIVE")
    s.client.register_schema(subject, Schema(avro_order([{"name": "channel", "type": "string", "default": "web"}]), "AVRO"))
    s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    # Against v2 (AVRO_V1) alone the change is compatible (the new field has a default); against
    # v1 it changes "channel" from string to int: refused only transitively.
    v3 = avro_order([{"name": "channel", "type": "int", "default": 0}])
    c = s.fresh_client()
    expect(c.test_compatibility(subject, Schema(v3, "AVRO"), version="latest") is True, "v3 against latest alone should be compatible")
    e = expect_error(lambda: c.register_schema(subject, Schema(v3, "AVRO")), 409, 409, "BACKWARD_TRANSITIVE register")
    return f"refused against version 1: {e.error_message[:120]}"


# ---------------------------------------------------------------------------------------------
# Avro through Kafka.


@check("avro.kafka.round_trip")
def _(s):
    topic = s.topic("avro-orders")
    ser = AvroSerializer(s.client, AVRO_V1)
    de = AvroDeserializer(s.fresh_client())
    sent = [order("123"), order("124", customerId="789")]
    got = s.through_kafka(topic, ser, de, sent)
    expect(got == sent, f"sent {sent}\n got {got}")
    latest = s.client.get_latest_version(f"{topic}-value")
    return f"{len(got)} OrderPlaced records through {topic}, subject {topic}-value v{latest.version} id {latest.schema_id}"


@check("avro.kafka.old_reader_reads_new_data")
def _(s):
    topic = s.topic("avro-evolve")
    subject = f"{topic}-value"
    s.client.set_compatibility(subject, "BACKWARD")
    ser_v1 = AvroSerializer(s.client, AVRO_V1)
    ser_v2 = AvroSerializer(s.client, AVRO_V2)
    ctx = SerializationContext(topic, MessageField.VALUE)
    s.produce(topic, [ser_v1(order("1"), ctx), ser_v2(order("2", coupon="SPRING"), ctx)])
    raw = s.consume(topic, 2)
    # The old consumer: reader schema v1, data written with v1 and v2 (coupon dropped).
    old = AvroDeserializer(s.fresh_client(), AVRO_V1)
    got_old = [old(r, ctx) for r in raw]
    expect(got_old == [order("1"), order("2")], f"v1 reader got {got_old}")
    # The new consumer: reader schema v2, the v1 record gets the default coupon (null).
    new = AvroDeserializer(s.fresh_client(), AVRO_V2)
    got_new = [new(r, ctx) for r in raw]
    expect(got_new == [order("1", coupon=None), order("2", coupon="SPRING")], f"v2 reader got {got_new}")
    versions = s.client.get_versions(subject)
    expect(versions == [1, 2], f"versions {versions}")
    return "v1 reader dropped the coupon; v2 reader defaulted it on v1 data"


@check("avro.kafka.topic_record_subject_strategy")
def _(s):
    # One topic, subjects per event type (TopicRecordNameStrategy): <topic>-<record full name>.
    from confluent_kafka.schema_registry import topic_record_subject_name_strategy

    topic = s.topic("avro-events")
    conf = {"subject.name.strategy": topic_record_subject_name_strategy}
    ser = AvroSerializer(s.client, AVRO_V1, conf=conf)
    de = AvroDeserializer(s.fresh_client())
    sent = [order("123")]
    got = s.through_kafka(topic, ser, de, sent)
    expect(got == sent, f"sent {sent}\n got {got}")
    subject = f"{topic}-com.example.orders.OrderPlaced"
    expect(s.fresh_client().get_versions(subject) == [1], f"subject {subject} not registered")
    return f"subject {subject}"


@check("avro.references")
def _(s):
    # LineItem in a subject of its own; OrderPlaced refers to it by name.
    item_subject = s.name("line-item")
    line_item = dict(AVRO_LINE_ITEM, namespace="com.example.orders")
    item_id = s.client.register_schema(item_subject, Schema(json.dumps(line_item), "AVRO"))
    refs = [SchemaReference("com.example.orders.LineItem", item_subject, 1)]
    with_ref = Schema(avro_order(items="com.example.orders.LineItem"), "AVRO", refs)
    topic = s.topic("avro-refs") if s.bootstrap else s.name("avro-refs")
    subject = f"{topic}-value"
    order_id = s.client.register_schema(subject, with_ref)
    c = s.fresh_client()
    latest = c.get_latest_version(subject)
    got_refs = [(r.name, r.subject, r.version) for r in latest.schema.references]
    expect(got_refs == [("com.example.orders.LineItem", item_subject, 1)], f"references {got_refs}")
    by = c.get_referenced_by(item_subject, 1)
    expect(by == [order_id], f"{item_subject} v1 referenced by {by}, expected [{order_id}]")
    # A referenced schema may not be deleted (Confluent: 42206).
    expect_error(lambda: c.delete_version(item_subject, 1), 422, 42206, "deleting a referenced version")
    expect_error(lambda: c.delete_subject(item_subject), 422, 42206, "deleting a referenced subject")
    detail = f"LineItem id {item_id} referenced by OrderPlaced id {order_id}"
    if s.bootstrap:
        ser = AvroSerializer(s.client, with_ref, conf={"auto.register.schemas": False, "use.latest.version": True})
        de = AvroDeserializer(s.fresh_client())
        sent = [order("123")]
        got = s.through_kafka(topic, ser, de, sent)
        expect(got == sent, f"sent {sent}\n got {got}")
        detail += "; round trip through Kafka"
    return detail


# ---------------------------------------------------------------------------------------------
# Deletes.


@check("delete.soft_subject")
def _(s):
    subject = s.name("soft-value")
    s.client.set_compatibility(subject, "NONE")
    s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    s.client.register_schema(subject, Schema(AVRO_V2, "AVRO"))
    c = s.fresh_client()
    deleted = c.delete_subject(subject)
    expect(deleted == [1, 2], f"soft delete answered {deleted}")
    expect(subject not in c.get_subjects(), "soft-deleted subject still listed")
    expect(subject in c.get_subjects(deleted=True), "soft-deleted subject not listed with deleted=true")
    expect_error(lambda: c.get_versions(subject), 404, 40401, "versions of a soft-deleted subject")
    expect_error(lambda: c.get_latest_version(subject), 404, 40401, "latest of a soft-deleted subject")
    expect(c.get_versions(subject, deleted=True) == [1, 2], "versions with deleted=true")
    return f"deleted {deleted}; listed only with deleted=true"


@check("delete.soft_deleted_version_readable")
def _(s):
    subject = s.name("soft-read-value")
    sid = s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    c = s.fresh_client()
    c.delete_subject(subject)
    v1 = c.get_version(subject, 1, deleted=True)
    expect((v1.version, v1.schema_id) == (1, sid), f"version 1 with deleted=true: {v1}")
    return f"version 1 (id {sid}) still readable with deleted=true"


@check("delete.soft_twice_40404")
def _(s):
    subject = s.name("soft2-value")
    s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    s.client.delete_subject(subject)
    expect_error(lambda: s.client.delete_subject(subject), 404, 40404, "soft-deleting a soft-deleted subject")


@check("delete.permanent_needs_soft_40405")
def _(s):
    subject = s.name("hard-first-value")
    s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    expect_error(
        lambda: s.client.delete_subject(subject, permanent=True), 404, 40405, "permanent delete without a soft delete"
    )
    expect(s.client.get_versions(subject) == [1], "the refused permanent delete changed the subject")


@check("delete.permanent_subject")
def _(s):
    subject = s.name("hard-value")
    sid = s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    s.client.delete_subject(subject)
    gone = s.client.delete_subject(subject, permanent=True)
    c = s.fresh_client()
    expect(gone == [1], f"permanent delete answered {gone}")
    expect(subject not in c.get_subjects(deleted=True), "permanently deleted subject still listed with deleted=true")
    expect_error(lambda: c.get_version(subject, 1, deleted=True), 404, 40401, "version 1 after a permanent delete")
    # Registered again, the same schema keeps its id (Confluent ids are per schema, not per subject).
    again = c.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    versions = c.get_versions(subject)
    expect(versions == [1], f"versions after re-registering {versions}")
    return f"gone {gone}; re-registered as id {again} (was {sid})"


@check("delete.soft_version")
def _(s):
    subject = s.name("softver-value")
    s.client.set_compatibility(subject, "NONE")
    s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    id2 = s.client.register_schema(subject, Schema(AVRO_V2, "AVRO"))
    c = s.fresh_client()
    expect(c.delete_version(subject, 2) == 2, "delete_version answered other than 2")
    expect(c.get_versions(subject) == [1], "versions after deleting version 2")
    expect(c.get_latest_version(subject).version == 1, "latest after deleting version 2")
    expect(c.get_versions(subject, deleted=True) == [1, 2], "versions with deleted=true")
    # A soft-deleted version's schema still resolves by id (old data stays readable).
    expect(json.loads(c.get_schema(id2).schema_str) == json.loads(AVRO_V2), "schema of a deleted version by id")
    # The next registration gets version 3, not 2 again.
    c.register_schema(subject, Schema(avro_order([{"name": "note", "type": ["null", "string"], "default": None}]), "AVRO"))
    expect(c.get_versions(subject) == [1, 3], f"versions after a new registration {c.get_versions(subject)}")
    return "version 2 soft-deleted; its id still resolves; the next is version 3"


@check("delete.version_permanent_needs_soft_40407")
def _(s):
    subject = s.name("hardver-value")
    s.client.register_schema(subject, Schema(AVRO_V1, "AVRO"))
    expect_error(
        lambda: s.client.delete_version(subject, 1, permanent=True), 404, 40407, "permanent version delete without a soft delete"
    )


# ---------------------------------------------------------------------------------------------
# JSON Schema.

JSON_V1 = json_order()
# Closed content model: a new optional property is backward compatible.
JSON_V2 = json_order({"coupon": {"type": "string"}})


@check("json.compat.backward_accepts_optional_property_closed_model")
def _(s):
    return evolve(s, "json-bw-ok", "BACKWARD", JSON_V1, JSON_V2, True, "JSON")


@check("json.compat.backward_refuses_property_added_to_open_model")
def _(s):
    # Confluent's rule: with an open content model, old data may hold the new property with any
    # type, so adding it is not backward compatible.
    return evolve(
        s, "json-bw-open", "BACKWARD", json_order(closed=False), json_order({"coupon": {"type": "string"}}, closed=False), False, "JSON"
    )


@check("json.compat.backward_refuses_type_change")
def _(s):
    return evolve(s, "json-bw-type", "BACKWARD", JSON_V1, json_order(total_type="string"), False, "JSON")


@check("json.compat.backward_refuses_required_property")
def _(s):
    return evolve(
        s, "json-bw-req", "BACKWARD", JSON_V1, json_order({"channel": {"type": "string"}}, required_extra=("channel",)), False, "JSON"
    )


@check("json.compat.forward_refuses_removed_required_property")
def _(s):
    return evolve(s, "json-fw-no", "FORWARD", JSON_V2, json_order({"coupon": {"type": "string"}}, drop=("customerId",)), False, "JSON")


@check("json.kafka.round_trip")
def _(s):
    topic = s.topic("json-orders")
    ser = JSONSerializer(JSON_V1, s.client)
    de = JSONDeserializer(None, schema_registry_client=s.fresh_client())
    sent = [json_event(order_id="123"), json_event(order_id="124")]
    got = s.through_kafka(topic, ser, de, sent)
    expect(got == sent, f"sent {sent}\n got {got}")
    return f"{len(got)} records through {topic}"


@check("json.kafka.old_reader_reads_new_data")
def _(s):
    # FORWARD: the new schema drops the optional coupon; a consumer still on the old schema
    # (which knows coupon as optional) validates and reads the new data.
    topic = s.topic("json-evolve")
    subject = f"{topic}-value"
    s.client.set_compatibility(subject, "FORWARD")
    ctx = SerializationContext(topic, MessageField.VALUE)
    ser_v1 = JSONSerializer(JSON_V2, s.client)
    first = ser_v1(json_event(order_id="1", coupon="SPRING"), ctx)
    ser_v2 = JSONSerializer(JSON_V1, s.client)
    second = ser_v2(json_event(order_id="2"), ctx)
    versions = s.client.get_versions(subject)
    expect(versions == [1, 2], f"versions {versions}")
    s.produce(topic, [first, second])
    raw = s.consume(topic, 2)
    old = JSONDeserializer(JSON_V2, schema_registry_client=s.fresh_client())
    got = [old(r, ctx) for r in raw]
    expect(got == [json_event(order_id="1", coupon="SPRING"), json_event(order_id="2")], f"old reader got {got}")
    return "old reader schema validated and read both versions' data"


# ---------------------------------------------------------------------------------------------
# Protobuf.


@check("protobuf.kafka.round_trip")
def _(s):
    topic = s.topic("proto-orders")
    cls = proto_classes(proto_file("v1"))["evident.orders.OrderPlaced"]
    ser = ProtobufSerializer(cls, s.client)
    de = ProtobufDeserializer(cls, schema_registry_client=s.fresh_client())
    sent = [proto_order({"evident.orders.OrderPlaced": cls})]
    got = s.through_kafka(topic, ser, de, sent)
    expect(got == sent, f"sent {sent}\n got {got}")
    latest = s.client.get_latest_version(f"{topic}-value")
    expect(latest.schema.schema_type == "PROTOBUF", f"schema type {latest.schema.schema_type}")
    return f"{len(got)} record through {topic}, subject v{latest.version} id {latest.schema_id}"


@check("protobuf.compat.backward_accepts_new_field")
def _(s):
    subject = s.name("proto-bw-ok-value")
    s.client.set_compatibility(subject, "BACKWARD")
    v1 = proto_classes(proto_file("v1"))["evident.orders.OrderPlaced"]
    v2 = proto_classes(proto_file("v2"))["evident.orders.OrderPlaced"]
    ctx = SerializationContext(s.name("proto-bw-ok"), MessageField.VALUE)
    ProtobufSerializer(v1, s.client)(proto_order({"evident.orders.OrderPlaced": v1}), ctx)
    ProtobufSerializer(v2, s.client)(proto_order({"evident.orders.OrderPlaced": v2}, coupon="X"), ctx)
    versions = s.client.get_versions(subject)
    expect(versions == [1, 2], f"versions {versions}")
    return "the serializer registered v2 (a new field) as version 2"


@check("protobuf.compat.backward_refuses_type_change")
def _(s):
    subject = s.name("proto-bw-no-value")
    s.client.set_compatibility(subject, "BACKWARD")
    v1 = proto_classes(proto_file("v1"))["evident.orders.OrderPlaced"]
    bad = proto_classes(proto_file("bad"))["evident.orders.OrderPlaced"]
    ctx = SerializationContext(s.name("proto-bw-no"), MessageField.VALUE)
    ProtobufSerializer(v1, s.client)(proto_order({"evident.orders.OrderPlaced": v1}), ctx)
    msg = bad(order_id=123, customer_id="456", total=1.0)
    try:
        ProtobufSerializer(bad, s.client)(msg, ctx)
    except SchemaRegistryError as e:
        expect((e.http_status_code, e.error_code) == (409, 409), f"got HTTP {e.http_status_code} / {e.error_code}: {e}")
        return f"refused with 409: {e.error_message[:120]}"
    except Exception as e:
        # The serializer wraps registry errors in SerializationError; the cause keeps the code.
        cause = e.__cause__ or e.__context__
        if isinstance(cause, SchemaRegistryError):
            expect((cause.http_status_code, cause.error_code) == (409, 409), f"got {cause}")
            return f"refused with 409: {cause.error_message[:120]}"
        raise
    raise Fail("order_id string -> int64 was accepted under BACKWARD")


@check("protobuf.kafka.old_reader_reads_new_data")
def _(s):
    topic = s.topic("proto-evolve")
    subject = f"{topic}-value"
    s.client.set_compatibility(subject, "BACKWARD")
    v1 = proto_classes(proto_file("v1"))["evident.orders.OrderPlaced"]
    v2 = proto_classes(proto_file("v2"))["evident.orders.OrderPlaced"]
    ctx = SerializationContext(topic, MessageField.VALUE)
    s.produce(topic, [ProtobufSerializer(v2, s.client)(proto_order({"evident.orders.OrderPlaced": v2}, coupon="SPRING"), ctx)])
    raw = s.consume(topic, 1)
    old = ProtobufDeserializer(v1, schema_registry_client=s.fresh_client())(raw[0], ctx)
    want = proto_order({"evident.orders.OrderPlaced": v1})
    # The v1 reader keeps the coupon as an unknown field: compare the known fields.
    old.DiscardUnknownFields()
    expect(old == want, f"old reader got {old}")
    return "v1 message class read v2 data (coupon skipped)"


def proto_with_import(s):
    """OrderPlaced importing LineItem from a file of its own (named per run, as the serializer
    registers an import under its file name): {full name: class}, and the imported file's name."""
    item = descriptor_pb2.FileDescriptorProto(
        name=f"evident/{s.run}/line_item.proto", package="evident.orders", syntax="proto3"
    )
    li = item.message_type.add(name="LineItem")
    _field(li, "sku", 1, FDP.TYPE_STRING)
    _field(li, "quantity", 2, FDP.TYPE_INT32)
    _field(li, "price", 3, FDP.TYPE_DOUBLE)
    main = proto_file("v1", with_line_item=False)
    main.dependency.append(item.name)
    return proto_classes(item, main), item.name


@check("protobuf.references")
def _(s):
    # The serializer registers the import under its own subject (the file name) and the main
    # schema with a reference to it.
    classes, item = proto_with_import(s)
    cls = classes["evident.orders.OrderPlaced"]
    subject = s.name("proto-refs-value")
    ctx = SerializationContext(s.name("proto-refs"), MessageField.VALUE)
    ProtobufSerializer(cls, s.client)(proto_order(classes), ctx)
    c = s.fresh_client()
    latest = c.get_latest_version(subject)
    refs = [(r.name, r.subject, r.version) for r in latest.schema.references]
    expect(refs == [(item, item, 1)], f"references {refs}")
    by = c.get_referenced_by(item, 1)
    expect(by == [latest.schema_id], f"{item} v1 referenced by {by}, expected [{latest.schema_id}]")
    return f"references {refs}"


@check("protobuf.kafka.references_round_trip")
def _(s):
    classes, _item = proto_with_import(s)
    cls = classes["evident.orders.OrderPlaced"]
    topic = s.topic("proto-refs-kafka")
    ser = ProtobufSerializer(cls, s.client)
    de = ProtobufDeserializer(cls, schema_registry_client=s.fresh_client())
    sent = [proto_order(classes)]
    got = s.through_kafka(topic, ser, de, sent)
    expect(got == sent, f"sent {sent}\n got {got}")
    return "OrderPlaced with an imported LineItem through Kafka"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("registry_url")
    ap.add_argument("bootstrap", help="Kafka bootstrap host:port, or - to skip produce/consume")
    ap.add_argument("--only", nargs="*", default=[], help="run only checks whose names start with these")
    ap.add_argument("--reference", choices=sorted(KNOWN_DIFFERENCES), help="known differences to expect")
    ap.add_argument("--list", action="store_true", help="print the check names and exit")
    args = ap.parse_args()
    if args.list:
        for name, _fn in CHECKS:
            print(name)
        return 0
    suite = Suite(args.registry_url, args.bootstrap, args.only, args.reference)
    suite.run_checks(CHECKS)
    summary = " ".join(f"{k}={v}" for k, v in sorted(suite.counts.items()))
    print(f"confluent-suite: {summary} (run {suite.run})", flush=True)
    return 1 if suite.failed else 0


if __name__ == "__main__":
    sys.exit(main())
