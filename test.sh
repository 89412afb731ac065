#!/usr/bin/env bash
# Set up and run the whole test suite (this is what .ci/run calls).
# Needs only Python 3.11 and access to the package registries.
set -euo pipefail
cd "$(dirname "$0")"
export UV_COMPILE_BYTECODE=1 PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true
command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
# Debian packages the tests use, when we may install them (root, as on CI): headless Chromium for the
# locality web page test, PostgreSQL for the PostgreSQL-option test.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  need=""
  command -v chromium >/dev/null 2>&1 || need="$need chromium"
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need="$need postgresql"
  if [ -n "$need" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null) \
      || echo "warning: could not install$need; the tests that need them will fail or skip" >&2
  fi
fi
# The PostgreSQL-option test gets a throwaway cluster: initdb in a temporary directory, run as the
# `postgres` user on an ephemeral port (unix socket in that directory, TCP on 127.0.0.1 only), with a
# non-superuser role `upstream_test` (LOGIN CREATEDB) whose password is random and never written to disk.
# The cluster is stopped and its directory removed when this script exits, whatever happens; the
# system's own PostgreSQL cluster is never touched.
start_throwaway_postgres() {
  local pg_bin port password
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$pg_bin" ] && id postgres >/dev/null 2>&1 || return 1
  PG_TMP=$(mktemp -d /tmp/upstream-test-pg.XXXXXX)
  chown postgres "$PG_TMP"
  trap stop_throwaway_postgres EXIT
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  password=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
  su postgres -s /bin/sh -c "'$pg_bin/initdb' -D '$PG_TMP/data' -U postgres --auth-local=peer --auth-host=scram-sha-256 -E UTF8 >/dev/null" || return 1
  su postgres -s /bin/sh -c "'$pg_bin/pg_ctl' -D '$PG_TMP/data' -l '$PG_TMP/server.log' -w -o \"-p $port -k '$PG_TMP' -c listen_addresses=127.0.0.1\" start >/dev/null" || return 1
  PG_CTL="$pg_bin/pg_ctl"
  # The password goes through stdin, never a command line other users could read.
  printf "CREATE ROLE upstream_test LOGIN CREATEDB NOSUPERUSER PASSWORD '%s';\n" "$password" \
    | su postgres -s /bin/sh -c "'$pg_bin/psql' -X -q -h '$PG_TMP' -p $port -d postgres" || return 1
  export UPSTREAM_TEST_POSTGRES_URL="postgresql+psycopg://upstream_test:$password@127.0.0.1:$port/postgres"
}
stop_throwaway_postgres() {
  if [ -n "${PG_CTL:-}" ] && [ -d "${PG_TMP:-}/data" ]; then
    su postgres -s /bin/sh -c "'$PG_CTL' -D '$PG_TMP/data' -m fast -w stop >/dev/null" || true
  fi
  [ -n "${PG_TMP:-}" ] && rm -rf "$PG_TMP"
}
if [ -z "${UPSTREAM_TEST_POSTGRES_URL:-}" ] && [ "$(id -u)" = 0 ]; then
  start_throwaway_postgres || echo "warning: no throwaway PostgreSQL; the PostgreSQL-option test will be skipped" >&2
fi
uv sync --locked --quiet
uv run --locked ruff check .
uv run --locked pytest "$@"
