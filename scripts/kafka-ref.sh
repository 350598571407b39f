#!/usr/bin/env bash
# A real Apache Kafka (the jars of java/kafka-ref/pom.xml, fetched by scripts/java-setup.sh) on
# 127.0.0.1, in KRaft mode, each node a combined broker+controller: the reference the conformance
# tests run every probe against beside evident, and the benchmark peer (issue 12).
#
#   scripts/kafka-ref.sh start [--nodes 1|3] [--dir D] [--port P] [--flush-every-message] [--partitions N]
#   scripts/kafka-ref.sh stop  [--dir D]
#   scripts/kafka-ref.sh kill  [--dir D] [--node I]
#   scripts/kafka-ref.sh resume [--dir D] [--node I]
#   scripts/kafka-ref.sh cut|heal --node I [--dir D]
#
# start formats fresh storage in D (default target/kafka-ref; whatever was there is removed),
# starts the node(s) in the background, waits (bounded) until each logs "Kafka Server started"
# and answers on its port, and prints KEY=value lines to eval: KAFKA_REF_BOOTSTRAP (host:port,...)
# and KAFKA_REF_DIR. Node i (0-based) listens on P+2i (clients) and P+2i+1 (controller).
# One node: replication factor 1. Three nodes: replication factor 3, min.insync.replicas 2,
# static voters. stop sends SIGTERM to the PIDs recorded in D (Kafka's shutdown hook does a
# controlled shutdown), then SIGKILL to any left after a bound. The choices are in docs/kafka.md.
# kill sends SIGKILL to the node(s) (a crash: no shutdown at all) and waits until they are gone,
# keeping D; resume starts them again on D's storage and configuration (same ports, nothing
# formatted) and waits as start does: a crash and recovery of the reference, for the tests that
# kill -9 the server under a client (tests/kafka_streams_eos.rs). With --node I (0-based), kill
# and resume act on node I alone, the others running on: one broker of a three-node cluster
# crashes and rejoins (tests/kafka_ref_cluster.rs); resume then waits for node I only, and
# still prints the whole cluster's KAFKA_REF_BOOTSTRAP.
# start --own-users (as root) runs node i as the system user evident-kafka-i (created if absent),
# so that cut --node I can cut node I off the network: an nftables rule drops every packet its
# user's sockets send (loopback included), so nothing reaches its peers or clients, replies and
# acknowledgements included, while the process runs on (a partition, not a crash); heal removes
# the rule. stop heals too. Needs nft (Debian's nftables; scripts/java-setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: $0 start|stop|kill|resume|cut|heal [--nodes 1|3] [--dir D] [--port P] [--flush-every-message] [--partitions N] [--node I] [--own-users]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
cmd=$1
shift
NODES=1
DIR="${CARGO_TARGET_DIR:-$PWD/target}/kafka-ref"
PORT=19092
# Partitions of an auto-created topic (num.partitions); librdkafka's test suite expects 4.
PARTITIONS=1
FLUSH=0
# kill/resume: the one node to act on (empty: all of them); cut/heal: the node.
NODE=""
OWN_USERS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) NODES=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --flush-every-message) FLUSH=1; shift ;;
    --partitions) PARTITIONS=$2; shift 2 ;;
    --node) NODE=$2; shift 2 ;;
    --own-users) OWN_USERS=1; shift ;;
    *) usage ;;
  esac
done
case "$NODES" in 1 | 3) ;; *) echo "kafka-ref: --nodes is 1 or 3" >&2; exit 2 ;; esac
if [ -n "$NODE" ]; then
  case "$cmd" in kill | resume | cut | heal) ;; *) echo "kafka-ref: --node is for kill, resume, cut and heal" >&2; exit 2 ;; esac
  [[ "$NODE" =~ ^[0-9]+$ ]] || { echo "kafka-ref: --node is a node number (0-based)" >&2; exit 2; }
fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
JAVA=${JAVA:-java}
# Bounds: a node starts in ~13 s on a loaded 2-core machine; a controlled shutdown takes a few.
START_LIMIT_SECS=${KAFKA_REF_START_LIMIT_SECS:-120}
STOP_LIMIT_SECS=30

# The nftables table that cuts node $1 off (named after its user, so one per node).
cut_table() {
  echo "evident_kafka_cut_$(cat "$DIR/n$1/user")"
}

# Removes node $1's cut, if any.
heal_node() {
  [ -e "$DIR/n$1/user" ] || return 0
  nft delete table inet "$(cut_table "$1")" 2>/dev/null || true
}

stop_all() {
  local n
  for n in "$DIR"/n*; do
    [ -e "$n/user" ] && heal_node "${n##*/n}"
  done
  # SIGTERM to every node at once: stopped one by one, the last ones lose their controller quorum
  # and their controlled shutdown waits for it.
  local f p i pids=()
  for f in "$DIR"/n*/pid; do
    [ -e "$f" ] || continue
    p=$(cat "$f")
    # Only our own broker: the PID file is ours, and the process must still be a kafka.Kafka.
    if kill -0 "$p" 2>/dev/null && grep -q 'kafka.Kafka' "/proc/$p/cmdline" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null || true
      pids+=("$p")
    fi
    rm -f "$f"
  done
  for p in "${pids[@]}"; do
    for ((i = 0; i < STOP_LIMIT_SECS * 10; i++)); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$p" 2>/dev/null; then
      echo "kafka-ref: broker pid $p ignored SIGTERM for ${STOP_LIMIT_SECS}s: SIGKILL" >&2
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
}

kill_nodes() {
  local f p i pattern="n*"
  [ -z "$NODE" ] || pattern="n$NODE"
  if [ -n "$NODE" ] && [ ! -e "$DIR/n$NODE/server.properties" ]; then
    echo "kafka-ref: kill: no node $NODE in $DIR" >&2
    exit 1
  fi
  for f in "$DIR"/$pattern/pid; do
    [ -e "$f" ] || continue
    p=$(cat "$f")
    if kill -0 "$p" 2>/dev/null && grep -q 'kafka.Kafka' "/proc/$p/cmdline" 2>/dev/null; then
      kill -KILL "$p" 2>/dev/null || true
      # The kernel frees the ports when the process is gone; resume binds them again.
      for ((i = 0; i < STOP_LIMIT_SECS * 10; i++)); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
      done
    fi
    rm -f "$f"
  done
}

if [ "$cmd" = stop ]; then
  stop_all
  exit 0
fi
if [ "$cmd" = kill ]; then
  kill_nodes
  exit 0
fi
if [ "$cmd" = cut ] || [ "$cmd" = heal ]; then
  [ -n "$NODE" ] || { echo "kafka-ref: $cmd needs --node I" >&2; exit 2; }
  if [ ! -e "$DIR/n$NODE/user" ]; then
    echo "kafka-ref: $cmd: node $NODE of $DIR does not run as a user of its own (start --own-users)" >&2
    exit 1
  fi
  heal_node "$NODE"
  if [ "$cmd" = cut ]; then
    table=$(cut_table "$NODE")
    uid=$(id -u "$(cat "$DIR/n$NODE/user")")
    nft add table inet "$table"
    nft add chain inet "$table" out '{ type filter hook output priority 0; policy accept; }'
    nft add rule inet "$table" out meta skuid "$uid" drop
  fi
  exit 0
fi
[ "$cmd" = start ] || [ "$cmd" = resume ] || usage

env_lines=$(bash scripts/java-setup.sh)
eval "$env_lines"
CP="$KAFKA_JAVA_LIB/*"
tool() {
  "$JAVA" -Xmx256m -Dlog4j2.configurationFile="$KAFKA_JAVA_CONF/log4j2-tools.properties" -cp "$CP" "$@"
}

if [ "$cmd" = start ]; then
  stop_all
  rm -rf "$DIR"/n*

  voters=""
  bootstrap=""
  for ((n = 0; n < NODES; n++)); do
    voters+="${voters:+,}$((n + 1))@127.0.0.1:$((PORT + 2 * n + 1))"
    bootstrap+="${bootstrap:+,}127.0.0.1:$((PORT + 2 * n))"
  done
  if [ "$NODES" = 1 ]; then rf=1; isr=1; else rf=3; isr=2; fi

  cid=$(tool kafka.tools.StorageTool random-uuid)
  for ((n = 0; n < NODES; n++)); do
    d="$DIR/n$n"
    mkdir -p "$d/data" "$d/logs"
    pb=$((PORT + 2 * n))
    pc=$((PORT + 2 * n + 1))
    {
      echo "process.roles=broker,controller"
      echo "node.id=$((n + 1))"
      # Static voters (one format, no directory ids): the simplest quorum that is the same for 1 and 3.
      echo "controller.quorum.voters=$voters"
      echo "listeners=PLAINTEXT://127.0.0.1:$pb,CONTROLLER://127.0.0.1:$pc"
      echo "advertised.listeners=PLAINTEXT://127.0.0.1:$pb"
      echo "inter.broker.listener.name=PLAINTEXT"
      echo "controller.listener.names=CONTROLLER"
      echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
      echo "log.dirs=$d/data"
      echo "num.partitions=$PARTITIONS"
      echo "default.replication.factor=$rf"
      # Set only where it differs from Kafka's default (1), so that a one-node broker shows no
      # topic configs of its own (kafka-topics --describe prints explicitly set broker configs).
      if [ "$isr" != 1 ]; then echo "min.insync.replicas=$isr"; fi
      echo "offsets.topic.replication.factor=$rf"
      echo "transaction.state.log.replication.factor=$rf"
      echo "transaction.state.log.min.isr=$isr"
      echo "share.coordinator.state.topic.replication.factor=$rf"
      echo "share.coordinator.state.topic.min.isr=$isr"
      echo "auto.create.topics.enable=true"
      # Tests: a group's first rebalance at once, not after Kafka's 3 s default.
      echo "group.initial.rebalance.delay.ms=0"
      echo "group.streams.initial.rebalance.delay.ms=0"
      # A 2-core machine: fewer threads and a smaller (heap-allocated) cleaner buffer than the defaults.
      echo "num.network.threads=2"
      echo "num.io.threads=4"
      echo "background.threads=4"
      echo "num.replica.fetchers=1"
      echo "num.recovery.threads.per.data.dir=1"
      echo "log.cleaner.dedupe.buffer.size=33554432"
      # Durable like evident (fsync before the append returns), for the benchmark's durable runs.
      if [ "$FLUSH" = 1 ]; then echo "log.flush.interval.messages=1"; fi
    } >"$d/server.properties"
    tool kafka.tools.StorageTool format -t "$cid" -c "$d/server.properties" >"$d/logs/format.log" 2>&1 ||
      { cat "$d/logs/format.log" >&2; exit 1; }
  done
else
  # resume: the nodes, ports and storage start wrote; nothing is formatted or removed.
  NODES=0
  for d in "$DIR"/n*; do
    [ -e "$d/server.properties" ] || continue
    n=${d##*/n}
    if [ -z "$NODE" ] || [ "$n" = "$NODE" ]; then
      if [ -e "$d/pid" ] && kill -0 "$(cat "$d/pid")" 2>/dev/null; then
        echo "kafka-ref: resume: node $d is still running (kill it first)" >&2
        exit 1
      fi
    fi
    NODES=$((NODES + 1))
  done
  if [ "$NODES" = 0 ]; then
    echo "kafka-ref: resume: no node started in $DIR" >&2
    exit 1
  fi
  if [ -n "$NODE" ] && [ ! -e "$DIR/n$NODE/server.properties" ]; then
    echo "kafka-ref: resume: no node $NODE in $DIR" >&2
    exit 1
  fi
  PORT=$(sed -nE 's/^listeners=PLAINTEXT:\/\/127\.0\.0\.1:([0-9]+),.*/\1/p' "$DIR/n0/server.properties")
  bootstrap=""
  for ((n = 0; n < NODES; n++)); do
    bootstrap+="${bootstrap:+,}127.0.0.1:$((PORT + 2 * n))"
  done
fi

# All nodes at once: each broker waits for a controller majority before it starts.
# A resumed node's server.log still holds its earlier "Kafka Server started" lines: wait for one more.
started_lines() {
  local c
  c=$(grep -c "Kafka Server started" "$1/logs/server.log" 2>/dev/null) || true
  echo "${c:-0}"
}
# The nodes to launch: all of them, or --node's alone.
launch=()
if [ -n "$NODE" ]; then launch=("$NODE"); else for ((n = 0; n < NODES; n++)); do launch+=("$n"); done; fi
declare -a seen
if [ "$cmd" = start ] && [ "$OWN_USERS" = 1 ]; then
  # Each node as a user of its own (for cut): the JVM by its real path (a shim in root's PATH may
  # not be readable by others), the node's directory its own, the cluster's directory passable.
  JAVA=$(readlink -f "$(command -v "$JAVA")")
  chmod o+x "$DIR"
  for n in "${launch[@]}"; do
    u="evident-kafka-$n"
    id -u "$u" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$u"
    echo "$u" >"$DIR/n$n/user"
    chown -R "$u:$u" "$DIR/n$n"
  done
fi
for n in "${launch[@]}"; do
  d="$DIR/n$n"
  seen[n]=$(started_lines "$d")
  # As the node's own user when it has one (setpriv execs: the PID is the JVM's).
  as_user=()
  if [ -e "$d/user" ]; then
    as_user=(setpriv --reuid="$(cat "$d/user")" --regid="$(cat "$d/user")" --clear-groups --)
    JAVA=$(readlink -f "$(command -v "$JAVA")")
  fi
  # The JVM flags of Kafka's kafka-run-class.sh (G1, short pauses), with a small heap.
  nohup "${as_user[@]}" "$JAVA" -Xms512m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dkafka.logs.dir="$d/logs" -Dlog4j2.configurationFile="$KAFKA_JAVA_CONF/log4j2-broker.properties" \
    -cp "$CP" kafka.Kafka "$d/server.properties" >>"$d/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$d/pid"
done

# A node that does not come up: stop everything start launched, but with --node only that node
# (the others are a running cluster the caller owns).
give_up() {
  if [ -n "$NODE" ]; then kill_nodes; else stop_all; fi
  exit 1
}
started=$SECONDS
for n in "${launch[@]}"; do
  d="$DIR/n$n"
  pb=$((PORT + 2 * n))
  until [ "$(started_lines "$d")" -gt "${seen[n]}" ] &&
    (exec 3<>"/dev/tcp/127.0.0.1/$pb") 2>/dev/null; do
    if ! kill -0 "$(cat "$d/pid")" 2>/dev/null; then
      echo "kafka-ref: node $n exited while starting" >&2
      tail -n 30 "$d/logs/stdout.log" "$d/logs/server.log" >&2 || true
      give_up
    fi
    if ((SECONDS - started > START_LIMIT_SECS)); then
      echo "kafka-ref: node $n not started after ${START_LIMIT_SECS}s" >&2
      tail -n 30 "$d/logs/server.log" >&2 || true
      give_up
    fi
    sleep 0.2
  done
done
echo "kafka-ref: ${#launch[@]} of $NODES node(s) (${launch[*]}) up after $((SECONDS - started)) s in $DIR" >&2
echo "KAFKA_REF_DIR=$DIR"
echo "KAFKA_REF_BOOTSTRAP=$bootstrap"
