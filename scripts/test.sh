#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this): style, lints, tidy checks,
# then every test of the workspace in release mode (the crash loop and the model test run many
# cycles; release keeps them within CI's budget). Needs the Rust toolchain; the real Kafka clients
# the conformance tests drive (kcat from Debian, confluent-kafka, kafka-python and aiokafka from
# PyPI in target/kafka-venv) are installed by scripts/kafka-clients-setup.sh, and Apache Kafka's
# Java jars (Maven, into target/java) by scripts/java-setup.sh, both run below; librdkafka's own
# test suite (built from its pinned release source) by scripts/librdkafka-tests.sh, at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
# A CI clone builds once: incremental caches would only take disk (1.5 GB for clippy alone).
export CARGO_INCREMENTAL=0

echo "== fmt"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== tidy"
fail=0
while IFS= read -r f; do
  if ! head -n 1 "$f" | grep -q '^//!'; then
    echo "tidy: $f does not open with a //! module comment"
    fail=1
  fi
done < <(find crates -name '*.rs' -not -path '*/target/*')
if grep -rnE 'todo!\(|unimplemented!\(|dbg!\(' crates --include='*.rs'; then
  echo "tidy: todo!/unimplemented!/dbg! left in code"
  fail=1
fi
[ "$fail" -eq 0 ] || exit 1

echo "== Kafka clients"
bash scripts/kafka-clients-setup.sh
# The Kafka conformance tests (tests/kafka_clients.rs, kafka_crash.rs) use these clients, and
# fail instead of skipping when they are missing.
export EVIDENT_TEST_PYTHON="$PWD/target/kafka-venv/bin/python"
export EVIDENT_REQUIRE_KAFKA_CLIENTS=1

echo "== Kafka's Java tools"
# Apache Kafka 4.4's jars (Maven cache in target/java) and the tool runner: tests/kafka_jvm_tools.rs
# runs Kafka's CLI tools against evident and against a real Kafka it starts from these jars, and
# tests/kafka_java_client.rs the Java client and Kafka Streams (java/client-probes), and
# tests/kafka_java_transactions.rs its transactions and Kafka's TransactionalMessageCopier.
java_env="$(bash scripts/java-setup.sh)"
eval "$java_env"
export KAFKA_JAVA_LIB KAFKA_JAVA_CLASSES KAFKA_JAVA_CONF
export EVIDENT_REQUIRE_KAFKA_JAVA=1

echo "== Reference schema registry"
# Apicurio Registry 3.3.3 from Maven Central (cached in target/registry-ref; Java 21+):
# tests/registry_confluent.rs runs Confluent's Python clients against it beside evident's registry.
ref_env="$(bash scripts/registry-ref.sh fetch)"
eval "$ref_env"
export REGISTRY_REF_HOME
export EVIDENT_REQUIRE_REGISTRY_REF=1

echo "== PostgreSQL"
# The projection tests write read models to a real PostgreSQL: a dedicated cluster on
# 127.0.0.1:55432 (fsync on), set up and started by this script, which prints the URL.
# (An assignment, so that set -e stops here if the setup fails; eval "$(...)" would not.)
pg_env="$(bash scripts/postgres-setup.sh)"
eval "$pg_env"
export EVIDENT_TEST_POSTGRES_URL
# They fail instead of skipping when the URL is missing.
export EVIDENT_REQUIRE_POSTGRES=1

echo "== tests"
# The test log goes beside the build (CARGO_TARGET_DIR may point elsewhere than ./target).
out="${CARGO_TARGET_DIR:-target}/test-output.txt"
mkdir -p "$(dirname "$out")"
# --no-fail-fast: one run reports every failing test binary, not only the first.
# Tests print as they run (--nocapture), so a failure's message sits among other tests' output;
# on failure it is repeated at the end, where a log's tail shows it.
status=0
cargo test --workspace --release --no-fail-fast -- --nocapture 2>&1 | tee "$out" | grep -vE '^(SEND|ACK) ' \
  || status=$?
if [ "$status" -ne 0 ] || grep -qE '^test .* \.\.\. FAILED$' "$out"; then
  echo "== failed tests and their panics"
  for name in $(sed -nE 's/^test (.*) \.\.\. FAILED$/\1/p' "$out" | sort -u); do
    echo "--- $name"
    grep -F -A12 "thread '$name'" "$out" | grep -vE '^ +[0-9]+: |^ +at ' | head -40 || true
  done
  echo "== seeds of the randomized tests (set them to repeat a run)"
  grep -E 'seed=' "$out" | head -40 || true
  exit "${status/#0/1}"
fi

echo "== HTTP contract (schemathesis)"
# The served OpenAPI documents (the HTTP API's, then the schema registry's) are validated, then
# schemathesis drives every documented operation of a live `evident serve` within a bounded budget
# per API: no 5xx, no reply that contradicts the document.
EVIDENT_BIN="${CARGO_TARGET_DIR:-target}/release/evident" bash scripts/schemathesis.sh

echo "== librdkafka's test suite"
# librdkafka 2.15.1's own tests, the applicable subset pinned in tests/librdkafka/applicable.txt
# (each with its timeout), against a fresh `evident serve`; librdkafka and its test-runner are
# built once into target/librdkafka-tests. Prints the pass/fail counts; any failure fails here.
EVIDENT_BIN="${CARGO_TARGET_DIR:-target}/release/evident" bash scripts/librdkafka-tests.sh
# Repeat the figures the reliability tests print, so they are easy to find in CI's log.
echo "== figures"
grep -E '^[A-Za-z0-9 _(),-]+: .*=[0-9]' "$out" || true
