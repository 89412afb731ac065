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
if [ -z "${UPSTREAM_TEST_POSTGRES_URL:-}" ] && [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null 2>&1; then
  pg_version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  pg_ctlcluster "$pg_version" main start 2>/dev/null || true
  role_exists=$(su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname = 'upstream'\"" 2>/dev/null || true)
  if [ "$role_exists" = 1 ] || su postgres -c "psql -qc \"CREATE ROLE upstream LOGIN SUPERUSER PASSWORD 'upstream'\"" >/dev/null 2>&1; then
    export UPSTREAM_TEST_POSTGRES_URL=postgresql+psycopg://upstream:upstream@127.0.0.1/postgres
  else
    echo "warning: PostgreSQL did not start; the PostgreSQL-option test will be skipped" >&2
  fi
fi
uv sync --locked --quiet
uv run --locked ruff check .
uv run --locked pytest "$@"
