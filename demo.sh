#!/usr/bin/env bash
# Set up and run the demo: synthetic delivery -> weekly flow (ingest, features, train, score, lists) -> API.
# Needs only Python 3.11 and access to the package registries. Extra arguments go to `upstream demo`
# (e.g. ./demo.sh --quick).
set -euo pipefail
cd "$(dirname "$0")"
export UV_COMPILE_BYTECODE=1 PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true
command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
uv sync --locked --quiet
exec uv run --locked upstream demo "$@"
