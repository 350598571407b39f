#!/usr/bin/env bash
# Installs the real Kafka clients the conformance tests drive (crates/evident-server/tests/
# kafka_clients.rs, kafka_crash.rs, registry_confluent.rs): kcat from Debian, and confluent-kafka
# (with what its schema-registry serializers need), kafka-python and aiokafka (and
# prometheus-client, for its OpenMetrics parser) from PyPI in a virtual environment at
# target/kafka-venv (target/ is not in git).
# Idempotent: what is already installed is left alone. Needs root (or sudo-less apt) only when
# kcat or python3-venv is missing. Prints the versions it ends up with.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="$PWD/target/kafka-venv"
# prometheus-client: its OpenMetrics parser checks /metrics (evident-server metrics tests).
PINS=(confluent-kafka==2.16.1 kafka-python==3.0.12 aiokafka==0.14.0 prometheus-client==0.26.0)
# confluent-kafka's extras avro, json and protobuf (its SchemaRegistryClient and serializers,
# tests/registry/confluent_suite.py), each pinned: the schema-registry client's own (attrs,
# cachetools, certifi, httpx2, authlib), Avro (fastavro, avro, requests), JSON Schema (jsonschema)
# and Protobuf (protobuf, googleapis-common-protos).
PINS+=(attrs==26.1.0 cachetools==8.0.2 certifi==2026.10.19.post1 httpx2==2.16.2 authlib==1.9.10
  fastavro==1.13.1 avro==1.12.2 requests==2.34.2 jsonschema==4.26.0
  protobuf==7.36.2 googleapis-common-protos==1.76.0)

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v kcat >/dev/null 2>&1; then
  echo "kafka-clients-setup: installing kcat (Debian)"
  apt_install kcat
fi

# The interpreter the venv is made from: python3 on PATH (Debian's needs python3-venv).
PY=$(command -v python3)
# A venv whose interpreter no longer runs (the base Python changed) is made anew.
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "kafka-clients-setup: installing python3-venv (Debian)"
    apt_install python3-venv
  fi
  echo "kafka-clients-setup: creating $VENV"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi

# Installed exactly at the pinned versions? (pip is not run at all when they are.)
if ! "$VENV/bin/python" - "${PINS[@]}" <<'EOF' >/dev/null 2>&1; then
import sys
from importlib.metadata import version
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    if version(name) != want:
        sys.exit(1)
EOF
  echo "kafka-clients-setup: pip install ${PINS[*]}"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
fi

echo "kafka-clients-setup: kcat $(kcat -V 2>&1 | grep -m1 '^Version')"
"$VENV/bin/python" - <<'EOF'
import sys
from importlib.metadata import version
import confluent_kafka
print("kafka-clients-setup: python", sys.version.split()[0],
      "| confluent-kafka", confluent_kafka.version(), "librdkafka", confluent_kafka.libversion()[0],
      "| kafka-python", version("kafka-python"), "| aiokafka", version("aiokafka"),
      "| fastavro", version("fastavro"), "jsonschema", version("jsonschema"), "protobuf", version("protobuf"))
EOF
