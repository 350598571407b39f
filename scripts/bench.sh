#!/usr/bin/env bash
# bench.sh - runs evident-bench: evident, the disk's physical limits, PostgreSQL and SQLite
# measured side by side on this machine, and evident's HTTP API and Kafka listener (driven by
# librdkafka) beside the embedded log (see BENCHMARKS.md).
#
# Usage (as root on Debian; arguments go to evident-bench):
#   scripts/bench.sh --quick                 # smoke test, about a minute
#   scripts/bench.sh 2>&1 | tee bench.txt    # full run, about 10 minutes
#   scripts/bench.sh --only http             # only the HTTP API against the embedded log
#   scripts/bench.sh --only kafka            # only the Kafka protocol (librdkafka): evident, the
#                                            # embedded log, Apache Kafka (jars from Maven Central)
#   scripts/bench.sh --only transactions     # Kafka transactions (10, 100, 1,000 records each,
#                                            # beside idempotent batches; consume-transform-
#                                            # produce) on evident and durable Apache Kafka
#   scripts/bench.sh --only registry         # the schema registry: evident's beside Apicurio
#                                            # Registry (scripts/registry-ref.sh, Java 21+),
#                                            # produce with validation on/off, verify=stored
#   scripts/bench.sh --only sql              # SQL views: seed 000's order_summary view on evident
#                                            # (catch-up, live, pull queries) beside the same
#                                            # aggregation in Kafka Streams on Apache Kafka
#   scripts/bench.sh --only cluster          # the library on a three-node Apache Kafka
#                                            # (KafkaBackend: appends, 1/8 writers, 1-3
#                                            # instances; stream reads) beside raw librdkafka
#                                            # produce on it and the embedded backend (~3 min)
#   scripts/bench.sh --only aggregates,projections  # the library: snapshot loads, projections
#   scripts/bench.sh --help                  # every flag
#   scripts/bench.sh --before REV --only http   # REV's build, then this tree's, in one run:
#                                            # the before/after table, regressions > 10% marked
#
# What it does: installs PostgreSQL (Debian's `postgresql`) and a C compiler if missing,
# creates and starts a dedicated PostgreSQL cluster listening on 127.0.0.1 only (port 5499 by
# default, fsync=on, synchronous_commit=on), creates the evident_bench role and database, builds
# evident-bench (with the bundled librdkafka, built from C source: about 2 minutes the first time)
# and the evident server (which the HTTP and Kafka phases start, with --http-addr 127.0.0.1:0
# --kafka-addr 127.0.0.1:0) in release mode, runs evident-bench, and stops the cluster on exit.
# PostgreSQL is left alone when it is not measured (--skip-postgres, or --only without appends,
# batches, reads or projections, such as --only kafka). The cluster's data
# stays in /var/lib/postgresql/<version>/evident_bench for the next run; drop it with
#   pg_dropcluster --stop <version> evident_bench
# Environment: EVIDENT_BENCH_PGPORT (default 5499), PGVER (default: newest installed),
# EVIDENT_BENCH_TANSU (a Tansu binary for the Kafka phase's comparison; default
# ~/.cache/evident-bench/tansu/bin/tansu, skipped when absent; see BENCHMARKS.md to build it).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PGPORT="${EVIDENT_BENCH_PGPORT:-5499}"
CLUSTER=evident_bench
ROLE=evident_bench

# --before REV is this script's own flag: it is taken out of the arguments evident-bench sees.
before=""
args=()
prev=""
for arg in "$@"; do
  if [ "$prev" = --before ]; then before="$arg"; prev=""; continue; fi
  case "$arg" in
    --before) prev=--before; continue ;;
    --before=*) before="${arg#--before=}"; continue ;;
  esac
  args+=("$arg")
  prev="$arg"
done
if [ "$prev" = --before ]; then
  echo "bench.sh: --before needs a git revision" >&2
  exit 2
fi
set -- "${args[@]+"${args[@]}"}"

want_pg=1
only=""
prev=""
for arg in "$@"; do
  case "$arg" in
    --skip-postgres | --help | -h | --version | -V) want_pg=0 ;;
    --only=*) only="$only,${arg#--only=}" ;;
  esac
  if [ "$prev" = --only ]; then only="$only,$arg"; fi
  prev="$arg"
done
# PostgreSQL is measured in the appends, batches, reads and projections phases only.
if [ -n "$only" ] && ! grep -qxE 'appends|batches|reads|projections' <<<"${only//,/$'\n'}"; then
  want_pg=0
fi

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
if [ "$want_pg" = 1 ] && ! command -v pg_ctlcluster >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "bench.sh: installing ${need_apt[*]}" >&2
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_apt[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "bench.sh: cargo not found; install the Rust toolchain (rust-version in Cargo.toml) first" >&2
  exit 1
fi

if [ "$want_pg" = 1 ]; then
  PGVER="${PGVER:-$(ls /usr/lib/postgresql | sort -V | tail -1)}"
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PGVER $CLUSTER"; then
    as_root pg_createcluster "$PGVER" "$CLUSTER" --port "$PGPORT" >/dev/null
  fi
  CONFDIR="/etc/postgresql/$PGVER/$CLUSTER"
  # Settings go to a conf.d drop-in (Debian's postgresql.conf includes conf.d/). Durability is
  # PostgreSQL's default and is checked again by evident-bench before it measures.
  as_root mkdir -p "$CONFDIR/conf.d"
  as_root tee "$CONFDIR/conf.d/evident-bench.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
max_connections = 128
shared_buffers = '1GB'
max_wal_size = '4GB'
checkpoint_timeout = '15min'
fsync = on
synchronous_commit = on
full_page_writes = on
CONF
  as_root chown postgres:postgres "$CONFDIR/conf.d/evident-bench.conf" 2>/dev/null || true

  stop_cluster() {
    as_root pg_ctlcluster "$PGVER" "$CLUSTER" stop >/dev/null 2>&1 || true
    echo "bench.sh: stopped PostgreSQL cluster $PGVER/$CLUSTER" >&2
  }
  trap stop_cluster EXIT
  as_root pg_ctlcluster "$PGVER" "$CLUSTER" restart 2>/dev/null \
    || as_root pg_ctlcluster "$PGVER" "$CLUSTER" start
  psql_pg() { as_root runuser -u postgres -- psql -X -q -p "$PGPORT" "$@"; }
  for _ in $(seq 1 30); do
    psql_pg -Atc "select 1" >/dev/null 2>&1 && break
    sleep 1
  done
  psql_pg -v ON_ERROR_STOP=1 <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN PASSWORD '$ROLE';
  END IF;
END \$\$;
GRANT pg_checkpoint TO $ROLE;
SQL
  if ! psql_pg -Atc "select 1 from pg_database where datname = '$ROLE'" | grep -q 1; then
    as_root runuser -u postgres -- createdb -p "$PGPORT" -O "$ROLE" "$ROLE"
  fi
  echo "bench.sh: PostgreSQL $PGVER/$CLUSTER ready on 127.0.0.1:$PGPORT" >&2
fi

cd "$REPO"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
PGARGS=()
if [ "$want_pg" = 1 ] && [ "$PGPORT" != 5499 ]; then
  PGARGS=(--pg "host=127.0.0.1 port=$PGPORT user=$ROLE password=$ROLE dbname=$ROLE")
fi

# Apache Kafka, the Kafka phase's peer: its jars from Maven Central (cached under target/java),
# for scripts/kafka-ref.sh (which the bench calls), kafka-producer-perf-test and Kafka Streams (the
# SQL phase). Skipped with --skip-apache-kafka, or when none of the Kafka, transactions, SQL and cluster
# phases runs.
want_kafka=1
only=""
prev=""
for arg in "$@"; do
  case "$arg" in
    --skip-apache-kafka) want_kafka=0 ;;
    --only=*) only="${arg#--only=}" ;;
  esac
  [ "$prev" = --only ] && only="$arg"
  prev="$arg"
done
if [ -n "$only" ] && ! [[ ",$only," == *",kafka,"* || ",$only," == *",transactions,"* || ",$only," == *",sql,"* || ",$only," == *",cluster,"* ]]; then
  want_kafka=0
fi
if [ "$want_kafka" = 1 ]; then
  java_env="$(bash "$REPO/scripts/java-setup.sh")"
  eval "$java_env"
  # The SQL phase runs java/client-probes/OrderSummary.java (Kafka Streams) from the classes.
  export KAFKA_JAVA_LIB KAFKA_JAVA_CLASSES KAFKA_JAVA_CONF
fi

if [ -n "$before" ]; then
  # The "before" build: REV checked out in a worktree of its own, built into the same target
  # directory (the dependencies are shared, so only evident's crates compile), its two binaries
  # copied aside, and run first with the same arguments. Its Markdown output is what
  # evident-bench --compare reads, so REV needs no --save of its own.
  rev="$(git rev-parse --short "$before")"
  side="$TARGET/bench-before"
  mkdir -p "$side/bin"
  git worktree remove --force "$side/src" >/dev/null 2>&1 || rm -rf "$side/src"
  git worktree prune
  git worktree add --detach "$side/src" "$rev" >/dev/null
  (cd "$side/src" && CARGO_TARGET_DIR="$TARGET" cargo build --release -p evident-bench -p evident-server)
  cp "$TARGET/release/evident-bench" "$TARGET/release/evident" "$side/bin/"
  git worktree remove --force "$side/src"
  cargo build --release -p evident-bench -p evident-server
  echo "bench.sh: before ($rev)" >&2
  "$side/bin/evident-bench" "${PGARGS[@]}" "$@" | tee "$side/$rev.md"
  echo "bench.sh: after (this tree)" >&2
  "$TARGET/release/evident-bench" "${PGARGS[@]}" "$@" --compare "$side/$rev.md"
  exit $?
fi

cargo build --release -p evident-bench -p evident-server
"$TARGET/release/evident-bench" "${PGARGS[@]}" "$@"
