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
# Starlette's TestClient sends ``Host: testserver``; production trusts only the loopback names, the bind host
# and what the deployment lists (serving.trusted_hosts).
os.environ.setdefault("UPSTREAM_SERVING__TRUSTED_HOSTS", '["testserver"]')

import pytest


@pytest.fixture(scope="session")
def prefect_harness():
    """A real, temporary Prefect server for the whole session (started only if a test asks)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def small_delivery_gate():
    """Widen the promotion gate for flow tests on a few thousand residents.

    With ~300 outcome events in the temporal test set, the calibration slope's sampling error is large
    (a slope of 1.45 is well within what chance gives), so the production band 0.8-1.2 would decide by
    luck which small test deliveries get a champion. The gate's own rules are tested in tests/models.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UPSTREAM_GATE__CALIBRATION_SLOPE_MIN", "0.3")
        patch.setenv("UPSTREAM_GATE__CALIBRATION_SLOPE_MAX", "3.0")
        patch.setenv("UPSTREAM_GATE__MAX_SUBGROUP_AUROC_GAP", "1.0")
        # Calibration-in-the-large already allows for chance (Poisson interval); widened for the same reason.
        patch.setenv("UPSTREAM_GATE__OBSERVED_EXPECTED_MIN", "0.5")
        patch.setenv("UPSTREAM_GATE__OBSERVED_EXPECTED_MAX", "2.0")
        patch.setenv("UPSTREAM_GATE__AGE_BAND_OBSERVED_EXPECTED_MIN", "0.5")
        patch.setenv("UPSTREAM_GATE__AGE_BAND_OBSERVED_EXPECTED_MAX", "2.0")
        yield
