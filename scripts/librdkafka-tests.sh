#!/usr/bin/env bash
# librdkafka's own test suite (its release source, pinned below) against a broker: by default a
# fresh `evident serve` this script starts, or any broker given with --bootstrap (the reference
# Apache Kafka, to prove each listed test passes there too; started as the suite's default
# scenario wants it: `scripts/kafka-ref.sh start --partitions 4`). Issue 12, part 4.
#
#   scripts/librdkafka-tests.sh [--bootstrap HOST:PORT] [--jobs N] [--list FILE] [ID ...]
#
# The tests that run, each with its timeout, and the reason each other test of the suite does not,
# are pinned in tests/librdkafka/applicable.txt; IDs on the command line run only those (of the
# list). The first run installs the Debian build packages if missing, fetches the librdkafka
# source (bundled, as released, in the npm package @confluentinc/kafka-javascript: GitHub is not
# reachable from CI), checks its sha512 and version, and builds the library and the test-runner
# into target/librdkafka-tests/ (~6 minutes on 2 cores); later runs reuse that build until the
# pinned version changes. Nothing of librdkafka is committed.
#
# Each test id runs in its own test-runner process under `timeout`, at most --jobs (default 3) at
# once; the runner's own per-test timeouts stay on beneath that. The step fails when any listed
# test fails, times out or is skipped (a listed test that skips would be a silent hole), or when
# the suite has a test id the list does not account for. Environment: EVIDENT_BIN (the server
# binary; default target/release/evident, which the test command builds first).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# The pin: librdkafka 2.15.1 as bundled by @confluentinc/kafka-javascript 1.10.1
# (package/deps/librdkafka, tests/ included). The integrity is npm's (`npm view
# @confluentinc/kafka-javascript@1.10.1 dist.integrity`).
NPM_PACKAGE_VERSION=1.10.1
TARBALL_URL="https://registry.npmjs.org/@confluentinc/kafka-javascript/-/kafka-javascript-$NPM_PACKAGE_VERSION.tgz"
TARBALL_SHA512="KVePUBn21EqCVP9mfxzEuM3SYJHHEF7X+iiC2e43QQgDSyEaksInmCGooT3w5q+cNAdkSCrK71j0ICfqoSqZLw=="
LIBRDKAFKA_VERSION=2.15.1
LIBRDKAFKA_VERSION_HEX=0x020f01ff
# The broker version the tests are told (TEST_KAFKA_VERSION): it gates which tests and sub-tests
# run. evident's protocol floors are Kafka 4.0's (KIP-896: record batch v2 only, Produce from v3,
# Fetch from v4), so the tests that need message format v0/v1 or `api.version.request=false`
# know not to try them. The same value is given to the reference broker (Kafka 4.4), so that both
# run the same sub-tests.
TEST_KAFKA_VERSION=${TEST_KAFKA_VERSION:-4.0.0}

BOOTSTRAP=""
# Three at a time, as the suite's own CI runs it: most tests wait on the broker and timers,
# not on the CPU.
JOBS=3
LIST="$ROOT/tests/librdkafka/applicable.txt"
ONLY=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bootstrap) BOOTSTRAP=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --list) LIST=$2; shift 2 ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    -*) echo "librdkafka-tests: unknown option $1" >&2; exit 2 ;;
    *) ONLY+=("$1"); shift ;;
  esac
done

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
CACHE="$TARGET/librdkafka-tests"
SRC="$CACHE/librdkafka-$LIBRDKAFKA_VERSION"
STAMP="$SRC/.built"
mkdir -p "$CACHE"

# ---- build (once per pinned version and flags) ----
# Lean: no SASL/GSSAPI, HTTP (OIDC) or zstd (the tests that need them are excluded in the list);
# lz4 and snappy are built in, gzip uses the system's zlib; OpenSSL only because a test sets
# `security.protocol=ssl` to make a client fail to start. No debug symbols: nobody steps
# through this build, and they lengthen its compile. No optimisation: the tests wait on the
# broker, not on the client's CPU, and -O0 builds in 42 s where -O2 took minutes (up to 11 on
# the shared 2-core machine), which CI's 40-minute budget cannot spare.
CONFIGURE_FLAGS="--disable-gssapi --disable-curl --disable-zstd --disable-lz4-ext --disable-debug-symbols --disable-optimization"
BUILD_ID="$LIBRDKAFKA_VERSION $TARBALL_SHA512 $CONFIGURE_FLAGS"
build() {
  local need=() started
  command -v gcc >/dev/null 2>&1 || need+=(gcc)
  command -v g++ >/dev/null 2>&1 || need+=(g++)
  command -v make >/dev/null 2>&1 || need+=(make)
  command -v python3 >/dev/null 2>&1 || need+=(python3) # lds-gen.py, the linker script
  command -v curl >/dev/null 2>&1 || need+=(curl)
  [ -e /usr/include/zlib.h ] || need+=(zlib1g-dev) # gzip, which 0017 compression tests
  [ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev) # 0064 sets security.protocol=ssl
  [ -e /usr/include/rapidjson/schema.h ] || need+=(rapidjson-dev) # 0053 checks the statistics JSON
  if [ ${#need[@]} -gt 0 ]; then
    echo "librdkafka-tests: installing ${need[*]} (Debian)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi

  local tgz="$CACHE/kafka-javascript-$NPM_PACKAGE_VERSION.tgz"
  if [ ! -s "$tgz" ] || [ "$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)" != "$TARBALL_SHA512" ]; then
    echo "librdkafka-tests: fetching $TARBALL_URL"
    curl -sSfL --retry 3 -o "$tgz.part" "$TARBALL_URL"
    mv "$tgz.part" "$tgz"
  fi
  local got
  got=$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)
  if [ "$got" != "$TARBALL_SHA512" ]; then
    echo "librdkafka-tests: $tgz has sha512 $got, expected $TARBALL_SHA512" >&2
    rm -f "$tgz"
    exit 1
  fi

  rm -rf "$SRC" "$CACHE/package"
  tar -xzf "$tgz" -C "$CACHE" package/deps/librdkafka
  mv "$CACHE/package/deps/librdkafka" "$SRC"
  rm -rf "$CACHE/package"
  if ! grep -q "^#define RD_KAFKA_VERSION $LIBRDKAFKA_VERSION_HEX" "$SRC/src/rdkafka.h"; then
    echo "librdkafka-tests: the tarball's src/rdkafka.h is not librdkafka $LIBRDKAFKA_VERSION ($LIBRDKAFKA_VERSION_HEX)" >&2
    exit 1
  fi

  echo "librdkafka-tests: building librdkafka $LIBRDKAFKA_VERSION and its test-runner in $SRC"
  started=$SECONDS
  (
    cd "$SRC"
    # shellcheck disable=SC2086 # the flags are words
    ./configure $CONFIGURE_FLAGS >"$CACHE/configure.log" 2>&1 || { tail -30 "$CACHE/configure.log"; exit 1; }
    make -j2 libs >"$CACHE/build.log" 2>&1 || { tail -30 "$CACHE/build.log"; exit 1; }
    make -C tests -j2 test-runner >>"$CACHE/build.log" 2>&1 || { tail -30 "$CACHE/build.log"; exit 1; }
  )
  echo "$BUILD_ID" >"$STAMP"
  echo "librdkafka-tests: built in $((SECONDS - started)) s"
}

if [ ! -x "$SRC/tests/test-runner" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$BUILD_ID" ]; then
  build
fi
# Any other version's build left in the cache is removed (disk is shared).
for old in "$CACHE"/librdkafka-*; do
  [ "$old" = "$SRC" ] || rm -rf "$old"
done

# ---- the list ----
# Lines: `run ID TIMEOUT_SECS quick|full` or `skip ID REASON`. quick is the suite's quick mode
# (-Q: fewer messages, and the sub-tests not marked quick are skipped), full runs every sub-test.
# Every test id of the suite's table (tests/test.c) must appear once, so that a new version's
# new tests are looked at, not missed.
declare -A TIMEOUT=()
declare -A MODE=()
declare -A LISTED=()
RUN=()
while read -r verb id rest; do
  case "$verb" in
    '' | '#'*) continue ;;
    run)
      RUN+=("$id")
      read -r TIMEOUT[$id] MODE[$id] _ <<<"$rest"
      ;;
    skip) ;;
    *) echo "librdkafka-tests: $LIST: bad line: $verb $id $rest" >&2; exit 2 ;;
  esac
  if [ -n "${LISTED[$id]:-}" ]; then
    echo "librdkafka-tests: $LIST: $id listed twice" >&2
    exit 2
  fi
  LISTED[$id]=1
done <"$LIST"
missing=()
while read -r id; do
  [ -n "${LISTED[$id]:-}" ] || missing+=("$id")
done < <(grep -oE '^\s*_TEST\(0[0-9]{3}_' "$SRC/tests/test.c" | grep -oE '[0-9]{4}' | sort -u)
if [ ${#missing[@]} -gt 0 ]; then
  echo "librdkafka-tests: test ids of librdkafka $LIBRDKAFKA_VERSION not in $LIST: ${missing[*]}" >&2
  exit 1
fi
if [ ${#ONLY[@]} -gt 0 ]; then
  for id in "${ONLY[@]}"; do
    [ -n "${TIMEOUT[$id]:-}" ] || { echo "librdkafka-tests: $id is not a listed test to run" >&2; exit 2; }
  done
  RUN=("${ONLY[@]}")
fi

# ---- the broker ----
WORK=$(mktemp -d /tmp/librdkafka-tests.XXXXXX)
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "$BOOTSTRAP" ]; then
  BIN="${EVIDENT_BIN:-$TARGET/release/evident}"
  [ -x "$BIN" ] || { echo "librdkafka-tests: no server binary at $BIN (cargo build --release -p evident-server)" >&2; exit 1; }
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  KAFKA_PORT=$(free_port)
  HTTP_PORT=$(free_port)
  # The suite's "default" scenario (tests/scenarios/default.json): topics auto-created with 4
  # partitions, which the tests produce to by number. fsync never: the tests check the protocol,
  # not durability, and share 2 cores with CI.
  "$BIN" serve --data-dir "$WORK/data" --http-addr "127.0.0.1:$HTTP_PORT" \
    --kafka-addr "127.0.0.1:$KAFKA_PORT" --registry-addr 127.0.0.1:0 --default-partitions 4 --auto-create-topics true \
    --fsync never >"$WORK/evident.log" 2>&1 &
  SERVER=$!
  BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; then break; fi
    kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/evident.log"; exit 1; }
    sleep 0.1
  done
  echo "librdkafka-tests: evident serve ($BIN) on $BOOTSTRAP"
else
  echo "librdkafka-tests: broker $BOOTSTRAP"
fi

# test.conf: the broker, and random topic names so that parallel tests and reruns never share a
# topic. The runner's own timeouts are doubled: two tests and the server share 2 cores.
cat >"$WORK/test.conf" <<EOF
bootstrap.servers=$BOOTSTRAP
test.topic.random=true
test.timeout.multiplier=2
EOF

# ---- run ----
# One test-runner per id: -L leaves out the local (broker-less, mock-cluster) functions of an id
# that also has broker tests; -Q is the suite's quick mode (as its own CI runs), unless the list
# says full.
# The sockem tests (a socket emulator in the test-runner that delays or cuts the client's
# connections to the real broker) are chosen in the list like any other.
run_one() {
  local id=$1 t=${TIMEOUT[$1]} rc=0 start=$SECONDS quick=""
  [ "${MODE[$1]}" = full ] || quick=-Q
  # An inner shell, so that its note of a runner killed by a signal (the runner aborts on a
  # failure) goes to the test's log, not to CI's.
  # CI=1 always: the suite reads $CI (more forgiving timeouts, 3 tests at a time, and some tests
  # skip themselves), and a run must behave the same on a developer's machine as in CI.
  CI=1 TESTS=$id TEST_KAFKA_VERSION=$TEST_KAFKA_VERSION RDKAFKA_TEST_CONF="$WORK/test.conf" \
    LD_LIBRARY_PATH="$SRC/src:$SRC/src-cpp" \
    bash -c 'cd "$1" && timeout --kill-after=10 "$2" ./test-runner -L $3 -p1; exit $?' _ "$SRC/tests" "$t" "$quick" \
    >"$WORK/$id.log" 2>&1 || rc=$?
  local verdict
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    verdict="TIMEOUT"
  elif [ "$rc" -ne 0 ]; then
    verdict="FAILED"
  elif grep -qE "^\|.* $id[_a-z0-9]* +\| +PASSED" "$WORK/$id.log"; then
    verdict="PASSED"
  else
    verdict="SKIPPED"
  fi
  echo "$verdict $id $((SECONDS - start))s" >"$WORK/$id.verdict"
  echo "librdkafka-tests: $id $verdict in $((SECONDS - start)) s (limit ${t} s)"
  if [ "$verdict" != PASSED ]; then
    # The runner's summary table and failure lines, to see why from CI's log.
    grep -E '^\|.*\|.*(FAILED|PASSED|SKIPPED)|FAIL|Test .* timed out|### ' "$WORK/$id.log" | tail -40 | sed "s/^/  $id: /"
    [ -n "${LIBRDKAFKA_TESTS_KEEP_LOGS:-}" ] && cp "$WORK/$id.log" "$LIBRDKAFKA_TESTS_KEEP_LOGS/" || true
  fi
}

started=$SECONDS
echo "librdkafka-tests: ${#RUN[@]} tests, $JOBS at a time, TEST_KAFKA_VERSION=$TEST_KAFKA_VERSION"
# The tests' own jobs only are waited for (a bare `wait` would wait for the server too).
jobs_running=()
for id in "${RUN[@]}"; do
  run_one "$id" &
  jobs_running+=($!)
  if [ ${#jobs_running[@]} -ge "$JOBS" ]; then
    wait -n "${jobs_running[@]}" || true
    still=()
    for p in "${jobs_running[@]}"; do
      if kill -0 "$p" 2>/dev/null; then still+=("$p"); fi
    done
    jobs_running=("${still[@]}")
  fi
done
for p in "${jobs_running[@]}"; do
  wait "$p" || true
done

passed=0
failed=()
for id in "${RUN[@]}"; do
  read -r verdict _ _ <"$WORK/$id.verdict"
  if [ "$verdict" = PASSED ]; then
    passed=$((passed + 1))
  else
    failed+=("$id:$verdict")
  fi
done
echo "librdkafka-tests: librdkafka $LIBRDKAFKA_VERSION against $BOOTSTRAP: ${passed} passed, ${#failed[@]} failed of ${#RUN[@]} in $((SECONDS - started)) s"
if [ -n "$SERVER" ] && ! kill -0 "$SERVER" 2>/dev/null; then
  echo "librdkafka-tests: the server exited during the run:" >&2
  tail -50 "$WORK/evident.log" >&2
  exit 1
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "librdkafka-tests: not passed: ${failed[*]}" >&2
  exit 1
fi
