"""Shared test fixtures.

Environment first: no telemetry, no network, no progress bars. The Prefect test server takes
about 10 s to start, so one session-scoped harness is shared by every test that needs it.
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("UPSTREAM_PSEUDO_KEY", "test-key-not-secret")

import pytest


@pytest.fixture(scope="session")
def prefect_harness():
    """A real, temporary Prefect server for the whole session (started only if a test asks)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
