#!/usr/bin/env bash
# postgres-setup.sh - a PostgreSQL for the test suite: the projection tests of crates/evident
# write read models and checkpoints to a real PostgreSQL on loopback.
#
# Usage (as root on Debian, or with sudo):
#   eval "$(bash scripts/postgres-setup.sh)"    # sets EVIDENT_TEST_POSTGRES_URL
#   bash scripts/postgres-setup.sh --stop       # stops the cluster (its data stays)
#
# What it does: installs Debian's `postgresql` if pg_ctlcluster is missing (one apt-get update),
# creates a dedicated cluster `evident_test` (separate from scripts/bench.sh's evident_bench and
# from Debian's main) listening on 127.0.0.1 only, port 55432 by default, with durability left
# at PostgreSQL's defaults (fsync=on, synchronous_commit=on, full_page_writes=on: the tests check
# that what a projection committed survives), starts it, waits until it accepts connections,
# creates the role (with CREATEDB, for tests that want a database of their own) and database
# `evident_test` (password `evident_test`, scram over TCP as Debian's pg_hba.conf has it for
# 127.0.0.1), checks a connection with the URL, and prints
#   export EVIDENT_TEST_POSTGRES_URL=postgresql://evident_test:evident_test@127.0.0.1:55432/evident_test
# on stdout (everything else goes to stderr). Idempotent: an existing cluster is reused and
# just started; the role and database are created only if missing.
# The cluster's data stays in /var/lib/postgresql/<version>/evident_test; drop it with
#   pg_dropcluster --stop <version> evident_test
# Environment: EVIDENT_TEST_PGPORT (default 55432), PGVER (default: newest installed).
set -euo pipefail

PGPORT="${EVIDENT_TEST_PGPORT:-55432}"
CLUSTER=evident_test
ROLE=evident_test
DB=evident_test
PASSWORD=evident_test

log() { echo "postgres-setup: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d /usr/lib/postgresql ] \
  || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
  log "installing postgresql (Debian)"
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi

PGVER="${PGVER:-$(ls /usr/lib/postgresql | sort -V | tail -1)}"

if [ "${1:-}" = --stop ]; then
  as_root pg_ctlcluster "$PGVER" "$CLUSTER" stop >&2 2>/dev/null || true
  log "stopped $PGVER/$CLUSTER"
  exit 0
fi

if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PGVER $CLUSTER"; then
  log "creating cluster $PGVER/$CLUSTER on port $PGPORT"
  # No auto start at boot: the test suite starts it when it needs it.
  as_root pg_createcluster "$PGVER" "$CLUSTER" --port "$PGPORT" --start-conf manual >&2
fi

CONFDIR="/etc/postgresql/$PGVER/$CLUSTER"
# Settings go to a conf.d drop-in (Debian's postgresql.conf includes conf.d/), rewritten each
# run so a changed port takes effect.
as_root mkdir -p "$CONFDIR/conf.d"
conf="$(
  cat <<CONF
# Written by scripts/postgres-setup.sh.
listen_addresses = '127.0.0.1'
port = $PGPORT
max_connections = 100
# Durability as in production: the projection tests check that committed work survives.
fsync = on
synchronous_commit = on
full_page_writes = on
CONF
)"
if [ "$(as_root cat "$CONFDIR/conf.d/evident-test.conf" 2>/dev/null || true)" != "$conf" ]; then
  printf '%s\n' "$conf" | as_root tee "$CONFDIR/conf.d/evident-test.conf" >/dev/null
  as_root chown postgres:postgres "$CONFDIR/conf.d/evident-test.conf" 2>/dev/null || true
  # A running cluster must restart to listen on a changed address or port.
  if pg_lsclusters -h | awk '{print $1" "$2" "$4}' | grep -qx "$PGVER $CLUSTER online"; then
    log "configuration changed: restarting $PGVER/$CLUSTER"
    as_root pg_ctlcluster "$PGVER" "$CLUSTER" restart >&2
  fi
fi

if ! pg_lsclusters -h | awk '{print $1" "$2" "$4}' | grep -qx "$PGVER $CLUSTER online"; then
  log "starting $PGVER/$CLUSTER"
  as_root pg_ctlcluster "$PGVER" "$CLUSTER" start >&2
fi

psql_admin() { as_root runuser -u postgres -- psql -X -q -p "$PGPORT" "$@"; }
ready=0
for _ in $(seq 1 60); do
  if psql_admin -Atc "select 1" >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.5
done
if [ "$ready" != 1 ]; then
  log "PostgreSQL $PGVER/$CLUSTER does not accept connections on port $PGPORT; its log:"
  as_root tail -n 30 "/var/log/postgresql/postgresql-$PGVER-$CLUSTER.log" >&2 || true
  exit 1
fi

psql_admin -v ON_ERROR_STOP=1 >&2 <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  ELSE
    ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  END IF;
END \$\$;
SQL
if ! psql_admin -Atc "select 1 from pg_database where datname = '$DB'" | grep -q 1; then
  as_root runuser -u postgres -- createdb -p "$PGPORT" -O "$ROLE" "$DB" >&2
fi

URL="postgresql://$ROLE:$PASSWORD@127.0.0.1:$PGPORT/$DB"
# The check the tests will make: log in over TCP with the URL, and see durability on.
settings="$(psql "$URL" -X -At -v ON_ERROR_STOP=1 -c "select current_setting('fsync') || ',' || current_setting('synchronous_commit')" 2>&1)" || {
  log "cannot connect with $URL: $settings"
  exit 1
}
if [ "$settings" != "on,on" ]; then
  log "expected fsync=on and synchronous_commit=on, the cluster has $settings"
  exit 1
fi
log "PostgreSQL $PGVER/$CLUSTER ready on 127.0.0.1:$PGPORT (fsync on)"
echo "export EVIDENT_TEST_POSTGRES_URL=$URL"
