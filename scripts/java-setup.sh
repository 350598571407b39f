#!/usr/bin/env bash
# Installs the JVM side of the Kafka conformance tests and of the reference broker (issue 12):
# Apache Kafka's jars from Maven Central, as pinned by java/kafka-ref/pom.xml, copied into
# target/java/lib (Maven's own cache at target/java/m2, so nothing outside the repository is
# touched), and the tool runner (java/tool-runner) and the client probes (java/client-probes)
# compiled against them into target/java/classes.
# Idempotent and fast when done: stamps keyed on the hash of the pom (the jars) and of the Java
# sources (the classes) skip Maven and javac. Needs Java 17+ (Kafka 4's broker and tools) with javac, and Maven;
# installs Debian's openjdk-17-jdk-headless / maven only when they are missing (root needed then).
# Prints the paths it set up as KEY=value lines (eval-able), the last one KAFKA_JAVA_LIB.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT="$PWD"
OUT="${CARGO_TARGET_DIR:-$ROOT/target}/java"
POM="$ROOT/java/kafka-ref/pom.xml"
RUNNER_SRC="$ROOT/java/tool-runner/ToolRunner.java"
# The Java client probes and the Kafka Streams application (tests/kafka_java_client.rs), the
# Java client's transactions (tests/kafka_java_transactions.rs).
CLIENT_SRCS=("$ROOT"/java/client-probes/*.java)

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Kafka 4's broker and tools need Java 17 (its clients 11); javac compiles the runner.
java_major() {
  java -version 2>&1 | sed -nE '1s/.*version "([0-9]+)(\.[0-9]+)*.*".*/\1/p'
}
if ! command -v java >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
  echo "java-setup: installing openjdk-17-jdk-headless (Debian)" >&2
  apt_install openjdk-17-jdk-headless
fi
major=$(java_major)
if [ -z "$major" ] || [ "$major" -lt 17 ]; then
  echo "java-setup: java on PATH is version '${major:-unknown}'; Kafka 4 needs 17 or newer" >&2
  exit 1
fi
if ! command -v mvn >/dev/null 2>&1; then
  echo "java-setup: installing maven (Debian)" >&2
  apt_install maven
fi
# nft: kafka-ref.sh cut cuts one broker off the network with an nftables rule (the fault tests).
if ! command -v nft >/dev/null 2>&1; then
  echo "java-setup: installing nftables (Debian)" >&2
  apt_install nftables
fi

# Two stamps: the jars are fetched again only when the pom changes, the programs compiled again
# when their sources (or the jars) change.
jars_want=$(sha256sum <"$POM" | cut -d' ' -f1)
jars_stamp="$OUT/stamp"
if [ "$(cat "$jars_stamp" 2>/dev/null)" != "$jars_want" ]; then
  echo "java-setup: fetching Kafka's jars (java/kafka-ref/pom.xml) into $OUT/lib" >&2
  rm -rf "$OUT/lib" "$OUT/classes" "$jars_stamp"
  mkdir -p "$OUT"
  # -o would fail on a fresh cache; -B (batch) keeps the log plain. The pom packs nothing, so
  # copy-dependencies is the only goal run.
  # Maven's log is kept beside the jars and shown only when it fails.
  if ! mvn -B -Dstyle.color=never -f "$POM" -Dmaven.repo.local="$OUT/m2" \
    dependency:copy-dependencies -DoutputDirectory="$OUT/lib" -DincludeScope=runtime >"$OUT/mvn.log" 2>&1; then
    tail -n 40 "$OUT/mvn.log" >&2
    echo "java-setup: maven failed (log: $OUT/mvn.log)" >&2
    exit 1
  fi
  echo "$jars_want" >"$jars_stamp"
fi
classes_want=$(cat "$POM" "$RUNNER_SRC" "${CLIENT_SRCS[@]}" | sha256sum | cut -d' ' -f1)
classes_stamp="$OUT/classes.stamp"
if [ ! -d "$OUT/classes" ] || [ "$(cat "$classes_stamp" 2>/dev/null)" != "$classes_want" ]; then
  echo "java-setup: compiling java/tool-runner and java/client-probes" >&2
  rm -rf "$OUT/classes" "$classes_stamp"
  mkdir -p "$OUT/classes"
  javac -nowarn -d "$OUT/classes" -cp "$OUT/lib/*" "$RUNNER_SRC" "${CLIENT_SRCS[@]}" >&2
  echo "$classes_want" >"$classes_stamp"
fi

echo "java-setup: java $(java -version 2>&1 | head -1 | sed -E 's/.*"(.*)".*/\1/'), $(ls "$OUT/lib" | wc -l) jars, kafka $(ls "$OUT/lib" | sed -nE 's/^kafka-clients-(.*)\.jar$/\1/p')" >&2
echo "KAFKA_JAVA_CONF=$ROOT/java/kafka-ref"
echo "KAFKA_JAVA_CLASSES=$OUT/classes"
echo "KAFKA_JAVA_LIB=$OUT/lib"
