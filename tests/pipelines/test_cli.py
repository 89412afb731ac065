"""The ``upstream`` CLI as a user runs it: real subprocesses against the session's temporary Prefect server.

- ``upstream schedule`` serves the weekly flow with ``flow.serve``: the deployment appears on the server
  given by ``PREFECT_API_URL`` (no second server is started) with the cron, time zone and raw dir passed.
- ``upstream run`` runs the weekly flow once, end to end, and publishes a week with its CSV lists.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from synthetic import generate
from upstream.processes import stop_process
from upstream.store import get_engine, published_weeks

ROOT = Path(__file__).resolve().parents[2]


def _harness_api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the prefect_harness fixture sets PREFECT_API_URL"
    return url


def _cli_env(home: Path, api_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "UPSTREAM_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    env.pop("UPSTREAM_CONFIG", None)  # no stray TOML file changes what the subprocess does
    return env


def _find_deployment(api_url: str, flow_name: str, name: str) -> dict | None:
    response = httpx.post(
        f"{api_url}/deployments/filter",
        json={
            "flows": {"name": {"any_": [flow_name]}},
            "deployments": {"name": {"any_": [name]}},
            "limit": 1,
            "offset": 0,
        },
        timeout=30,
    )
    response.raise_for_status()
    found = response.json()
    return found[0] if found else None


def _stop(process: subprocess.Popen, timeout: float = 60) -> int:
    """SIGINT (Ctrl+C) first, then kill if it does not stop in time."""
    return stop_process(process, timeout=timeout, sig=signal.SIGINT)


def test_schedule_serves_a_deployment_on_the_configured_server(prefect_harness, tmp_path):
    api_url = _harness_api_url()
    raw = tmp_path / "raw"
    raw.mkdir()  # the flow is not run: the delivery only has to exist
    home = tmp_path / "home"
    name = "cli-test-weekly"
    cron, timezone = "0 6 * * 1", "Europe/London"
    log_path = tmp_path / "schedule.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "upstream.cli",
                "schedule",
                "--cron",
                cron,
                "--timezone",
                timezone,
                "--raw",
                str(raw),
                "--name",
                name,
            ],
            cwd=ROOT,
            env=_cli_env(home, api_url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deployment = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and process.poll() is None:
                deployment = _find_deployment(api_url, "weekly", name)
                if deployment is not None:
                    break
                time.sleep(1)
            running = process.poll() is None
        finally:
            returncode = _stop(process)
    output = log_path.read_text()
    assert deployment is not None, f"no deployment weekly/{name} within 60 s (running={running}):\n{output}"
    assert running, output
    # It used the harness server (the one in PREFECT_API_URL), not a server of its own.
    assert f"Prefect UI: {api_url.removesuffix('/api')}" in output, output

    schedules = deployment["schedules"]
    assert len(schedules) == 1, schedules
    assert schedules[0]["schedule"]["cron"] == cron
    assert schedules[0]["schedule"]["timezone"] == timezone
    assert schedules[0]["active"] is True
    assert deployment["parameters"]["raw_dir"] == str(raw.resolve())
    assert deployment["parameters"]["home"] == str(home.resolve())

    # Ctrl+C stops it cleanly: the process has exited by itself (not killed). Whether Prefect's runner or
    # our CLI sees the interrupt first is a race, so both of its clean exits are accepted: 0, or 130
    # ("interrupted", the shell convention for SIGINT).
    assert returncode in (0, 130), output
    assert "Traceback" not in output, output


def test_run_publishes_a_week_end_to_end(prefect_harness, tmp_path):
    api_url = _harness_api_url()
    raw = tmp_path / "raw"
    generate.generate_delivery(raw, residents=1500, seed=3)
    home = tmp_path / "home"
    # As the small_delivery_gate fixture: a 1,500-resident test set is too small for the production
    # calibration band, so widen the gate for the subprocess (its own rules are tested in tests/models).
    env = _cli_env(
        home,
        api_url,
        UPSTREAM_GATE__CALIBRATION_SLOPE_MIN="0.3",
        UPSTREAM_GATE__CALIBRATION_SLOPE_MAX="3.0",
        UPSTREAM_GATE__MAX_SUBGROUP_AUROC_GAP="1.0",
    )
    completed = subprocess.run(
        [sys.executable, "-m", "upstream.cli", "run", "--raw", str(raw), "--train", "always"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-5000:]

    engine = get_engine(f"sqlite:///{home / 'upstream.db'}")
    with engine.connect() as conn:
        weeks = conn.execute(sa.select(published_weeks.c.week)).scalars().all()
    engine.dispose()
    assert len(weeks) == 1, weeks
    week = weeks[0]
    assert f"published {week}:" in completed.stdout, completed.stdout
    week_dir = home / "lists" / week
    csvs = sorted(week_dir.glob("*.csv"))
    assert csvs, f"no CSV lists in {week_dir}"
    for csv in csvs:
        assert csv.stat().st_size > 0, csv
    # The Prefect client's per-request INFO lines are quiet by default.
    assert "HTTP Request:" not in output, output[-3000:]
