#!/usr/bin/env bash
# A real, independent schema registry beside evident's: Apicurio Registry 3.3.3 (Apache 2.0) from
# Maven Central, serving Confluent's REST API at /apis/ccompat/v7, on 127.0.0.1. The registry
# conformance test (crates/evident-server/tests/registry_confluent.rs) runs Confluent's own
# clients against it and against evident, so a check that passes nowhere is caught.
#
#   scripts/registry-ref.sh fetch
#   scripts/registry-ref.sh start [--port N] [--dir D]
#   scripts/registry-ref.sh stop  [--dir D]
#
# fetch (which prints REGISTRY_REF_HOME=<the unpacked app>, for scripts/test.sh to export) downloads io.apicurio:apicurio-registry-app:3.3.3:tar.gz:all (the self-contained Quarkus
# fast-jar that Apicurio's release attaches; a full dependency resolution of the app would fail, as
# one of its modules is not on Maven Central) with Maven into target/registry-ref (Maven's cache
# there too, nothing outside the repository is touched) and unpacks it; a stamp makes it a no-op
# the second time. start fetches if needed, starts the registry in the background (in-memory H2
# storage: every start is a fresh, empty registry), waits (bounded) until the ccompat API answers,
# and prints KEY=value lines to eval: REGISTRY_REF_URL (…/apis/ccompat/v7) and REGISTRY_REF_DIR.
# --port 0 (the default) takes a free port, read back from Quarkus' start line. stop sends SIGTERM
# to the PID recorded in D, then SIGKILL after a bound.
#
# Needs Java 21+ (Apicurio 3 is built with release 21): $JAVA if set, else the newest JDK under
# /usr/lib/jvm that is 21 or later (Temurin 25 here); and Maven for fetch.
#
# Settings, and why (Apicurio departs from Confluent's defaults unless told):
#   - deletes of subjects and versions enabled (apicurio.rest.deletion.*): off by default, and
#     Confluent's clients' delete_subject / delete_version need them;
#   - global rules validity=FULL and compatibility=BACKWARD: Confluent parses every schema it is
#     given (invalid: 42201) and its default compatibility level is BACKWARD; Apicurio by default
#     checks neither;
#   - the management interface (health, metrics on a second port; enabled at Apicurio's build, so
#     it cannot be turned off here) on loopback and a free port: its default, 0.0.0.0:9000, would
#     leave loopback and collide with a second instance;
#   - a small heap and C1 only: a 2-core machine shared with builds; it starts in ~6 s.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=3.3.3
ARTIFACT="io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all"
usage() {
  echo "usage: $0 fetch | start [--port N] [--dir D] | stop [--dir D]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
cmd=$1
shift
BASE="${CARGO_TARGET_DIR:-$PWD/target}/registry-ref"
DIR="$BASE/run"
PORT=0
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    *) usage ;;
  esac
done
APP="$BASE/apicurio-registry-$VERSION"
START_LIMIT_SECS=${REGISTRY_REF_START_LIMIT_SECS:-120}
STOP_LIMIT_SECS=20

fetch() {
  if [ -f "$APP/quarkus-run.jar" ] && [ "$(cat "$APP/stamp" 2>/dev/null)" = "$ARTIFACT" ]; then
    return
  fi
  command -v mvn >/dev/null 2>&1 || { echo "registry-ref: maven (mvn) is needed to fetch $ARTIFACT" >&2; exit 1; }
  echo "registry-ref: fetching $ARTIFACT from Maven Central into $BASE" >&2
  mkdir -p "$BASE"
  rm -rf "$APP" "$BASE/dl"
  # dependency:copy fetches exactly the one attached archive (no transitive resolution); the
  # plugin's version is pinned so no pom is needed. Maven's log is shown only when it fails.
  if ! mvn -B -Dstyle.color=never -Dmaven.repo.local="$BASE/m2" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
    -Dartifact="$ARTIFACT" -DoutputDirectory="$BASE/dl" >"$BASE/mvn.log" 2>&1; then
    tail -n 40 "$BASE/mvn.log" >&2
    echo "registry-ref: maven failed (log: $BASE/mvn.log)" >&2
    exit 1
  fi
  mkdir -p "$APP.tmp"
  tar -xzf "$BASE/dl/apicurio-registry-app-$VERSION-all.tar.gz" -C "$APP.tmp"
  [ -f "$APP.tmp/quarkus-run.jar" ] || { echo "registry-ref: the archive holds no quarkus-run.jar" >&2; exit 1; }
  # The archive is kept out of the cache once unpacked (160 MB); the m2 copy stays for a refetch.
  rm -rf "$BASE/dl"
  echo "$ARTIFACT" >"$APP.tmp/stamp"
  mv "$APP.tmp" "$APP"
}

find_java() {
  if [ -n "${JAVA:-}" ]; then
    echo "$JAVA"
    return
  fi
  local j v best="" bestv=0
  for j in /usr/lib/jvm/*/bin/java $(command -v java || true); do
    [ -x "$j" ] || continue
    v=$("$j" -version 2>&1 | sed -nE '1s/.*version "([0-9]+)(\.[0-9]+)*.*".*/\1/p')
    if [ -n "$v" ] && [ "$v" -ge 21 ] && [ "$v" -gt "$bestv" ]; then
      best=$j
      bestv=$v
    fi
  done
  [ -n "$best" ] || { echo "registry-ref: Apicurio $VERSION needs Java 21 or newer; none found (set JAVA)" >&2; exit 1; }
  echo "$best"
}

stop_ref() {
  local f="$DIR/pid" p i
  [ -e "$f" ] || return 0
  p=$(cat "$f")
  # Only our own registry: the PID file is ours, and the process must still run quarkus-run.jar
  # from this cache (a PID may have been reused since).
  if kill -0 "$p" 2>/dev/null && grep -qa "$APP/quarkus-run.jar" "/proc/$p/cmdline" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < STOP_LIMIT_SECS * 10; i++)); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$p" 2>/dev/null; then
      echo "registry-ref: pid $p ignored SIGTERM for ${STOP_LIMIT_SECS}s: SIGKILL" >&2
      kill -KILL "$p" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

case "$cmd" in
  fetch)
    fetch
    # A missing Java 21+ shows here, at setup, not later as a failed test.
    echo "registry-ref: Apicurio $VERSION, java $(find_java)" >&2
    echo "REGISTRY_REF_HOME=$APP"
    exit 0
    ;;
  stop)
    stop_ref
    exit 0
    ;;
  start) ;;
  *) usage ;;
esac

fetch
JAVA_BIN=$(find_java)
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
stop_ref
log="$DIR/registry.log"
: >"$log"
nohup "$JAVA_BIN" -Xms64m -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
  -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$PORT" \
  -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port=0 \
  -Dapicurio.rest.deletion.group.enabled=true \
  -Dapicurio.rest.deletion.artifact.enabled=true \
  -Dapicurio.rest.deletion.artifact-version.enabled=true \
  -Dapicurio.rules.global.validity=FULL \
  -Dapicurio.rules.global.compatibility=BACKWARD \
  -jar "$APP/quarkus-run.jar" >"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$DIR/pid"

# Quarkus logs "… started in N s. Listening on: http://127.0.0.1:PORT" once it serves.
port=""
for ((i = 0; i < START_LIMIT_SECS * 10; i++)); do
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -n 40 "$log" >&2
    echo "registry-ref: Apicurio exited during start (log: $log)" >&2
    rm -f "$DIR/pid"
    exit 1
  fi
  port=$(sed -nE 's/.*started in .* Listening on: http:\/\/127\.0\.0\.1:([0-9]+).*/\1/p' "$log" | head -n 1)
  [ -n "$port" ] && break
  sleep 0.1
done
if [ -z "$port" ]; then
  tail -n 40 "$log" >&2
  echo "registry-ref: Apicurio did not start within ${START_LIMIT_SECS}s (log: $log)" >&2
  stop_ref
  exit 1
fi
url="http://127.0.0.1:$port/apis/ccompat/v7"
if ! curl -sf -o /dev/null "$url/subjects"; then
  echo "registry-ref: $url/subjects does not answer (log: $log)" >&2
  stop_ref
  exit 1
fi
echo "registry-ref: Apicurio Registry $VERSION (pid $pid) at $url" >&2
echo "REGISTRY_REF_URL=$url"
echo "REGISTRY_REF_DIR=$DIR"
