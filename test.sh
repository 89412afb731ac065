#!/usr/bin/env bash
# Set up and run the whole test suite (this is what .ci/run calls).
# Needs only Python 3.11 and access to the package registries.
set -euo pipefail
cd "$(dirname "$0")"
export UV_COMPILE_BYTECODE=1 PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true
command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
# Headless Chromium for the locality web page test (Debian package; needs root, as on CI).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the browser test will fail" >&2
fi
uv sync --locked --quiet
uv run --locked ruff check .
uv run --locked pytest "$@"
