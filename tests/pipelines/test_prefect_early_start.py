"""The temporary Prefect API launched ahead of need (issue 15, the scoring week's fixed costs).

``launch_temporary_api`` starts the server's process at the top of a run so that it boots on the other core
while the run imports its flows; the run's ``watched_prefect_api`` must then adopt THAT process (one server,
not two), and a launched server that cannot be adopted must not be left running. Each case runs in its own
Python process with no API configured (the test session's harness API would make the launch a no-op).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.pipelines.test_prefect_port_race import _env

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
from contextlib import contextmanager
from pathlib import Path
from pipelines.prefect_server import (_launched, _temporary_api, api_answers, current_api, launch_temporary_api,
                                      prepare_environment)
prepare_environment()
wanted, given = Path(sys.argv[1]), Path(sys.argv[2])
launch_temporary_api(server_log=wanted)
launched = _launched["process"]
port = _launched["listener"].getsockname()[1]
with contextmanager(_temporary_api)(server_log=given):
    url, ours = current_api()
    report = {"launched": launched.pid, "launched_exit": launched.poll(), "ours": ours.pid, "url": url,
              "launched_port": port, "answers": api_answers(url, timeout=10), "left_to_adopt": bool(_launched),
              "server_app_in_this_process": "prefect.server.api.server" in sys.modules}
report["ours_exit_after"] = ours.poll()
print(json.dumps(report), flush=True)
"""


def _run(tmp_path: Path, wanted: Path, given: Path) -> dict:
    env = _env(tmp_path) | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), str(wanted), str(given)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "setsid"), reason="POSIX only")
def test_the_run_adopts_the_server_it_launched_ahead_and_starts_no_second_one(tmp_path):
    log = tmp_path / "logs" / "prefect-server.log"
    report = _run(tmp_path, log, log)
    assert report["ours"] == report["launched"]  # the launched process is the run's API: no second server
    assert report["url"] == f"http://127.0.0.1:{report['launched_port']}/api"  # on the port reserved at launch
    assert report["answers"] is True
    assert report["left_to_adopt"] is False
    assert report["ours_exit_after"] is not None  # stopped when the run left its API
    assert log.exists()
    # Prefect's server app is imported by the server's process only, not on the run's path to its first step
    # (1.9 CPU s, 3 s wall: bench/README.md, issue 15 session 6).
    assert report["server_app_in_this_process"] is False


@pytest.mark.skipif(not hasattr(os, "setsid"), reason="POSIX only")
def test_a_launched_server_logging_elsewhere_is_stopped_and_the_run_starts_its_own(tmp_path):
    report = _run(tmp_path, tmp_path / "launched.log", tmp_path / "run.log")
    assert report["ours"] != report["launched"]
    assert report["launched_exit"] is not None  # not left running beside the run's own server
    assert report["answers"] is True
    assert report["ours_exit_after"] is not None
    assert (tmp_path / "run.log").exists()
