"""Issue 17's root cause: the temporary Prefect server's port race.

Prefect's ``SubprocessASGIServer`` drew a port with a bind test and started uvicorn, which bound it only
after importing Prefect's app and running its lifespan (seconds). Another process on the machine drawing
the same port in that window passed the same test; the loser's uvicorn exited 3, but its parent had
already had ``200`` from the winner's ``/api/health`` and ran against the winner's server until its owner
ended. These tests set up exactly that condition with real processes on ephemeral ports: a foreign
server already answering on the port the old code's draw lands on, its bind test passing as it does
for a port drawn but not yet bound. Our API must be our own child's, and must outlive the foreigner.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from upstream.processes import listening_pids, stop_process

ROOT = Path(__file__).resolve().parents[2]

#: A server of another process: answers Prefect's health check, and nothing else.
STAND_IN = """
import http.server, sys
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/api/health"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"true" if ok else b"{}")
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Health)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def _env(tmp_path: Path) -> dict[str, str]:
    """A process with no API configured (so it starts its own server) and its own Prefect DB."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    return env | {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "true",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def foreign_server():
    """(pid, port) of a running stand-in for another process's Prefect server; stopped after the test."""
    process = subprocess.Popen([sys.executable, "-c", STAND_IN], stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        yield process, port
    finally:
        stop_process(process, timeout=5)
        process.stdout.close()


def _script(body: str, tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(body)],
        cwd=ROOT,
        env=_env(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _report(process: subprocess.Popen) -> dict:
    line = process.stdout.readline()
    if not line:
        process.wait(10)
        raise AssertionError(f"the run printed nothing; exit {process.returncode}: {process.stderr.read()[-3000:]}")
    return json.loads(line)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads socket owners from /proc")
def test_a_foreign_server_on_the_drawn_port_is_never_taken_for_ours(tmp_path, foreign_server):
    """The race, made deterministic: Prefect's port draw narrowed to the port where another process's
    server already answers, and its bind test passing (as it did in the window before that server bound).
    Old code: start-up "succeeded" on the foreigner's 200, our own server exited 3 seconds later, and when
    the foreigner stopped the run had no API. Now: the API we use is served by our own child, which is
    alive, and it still answers after the foreign server is gone."""
    foreigner, foreign_port = foreign_server
    run = _script(
        f"""
        import json, os, sys
        from contextlib import contextmanager
        from urllib.parse import urlparse
        from upstream.processes import listening_pids
        from pipelines.prefect_server import _temporary_api, api_answers, current_api, prepare_environment
        prepare_environment()
        from prefect.server.api.server import SubprocessASGIServer

        # The race's precondition: the draw lands on the port being taken, and its bind test passes.
        SubprocessASGIServer._port_range = range({foreign_port}, {foreign_port} + 1)
        SubprocessASGIServer.is_port_available = staticmethod(lambda port: True)

        with contextmanager(_temporary_api)():
            url, own = current_api()
            port = urlparse(url).port
            seen = sorted(listening_pids(port))
            if own.pid not in seen:  # the old code's story, for the failure message: our own uvicorn lost the bind
                own.wait(120)
            print(json.dumps({{"port": port, "us": os.getpid(), "own": own.pid, "listeners": seen,
                               "own_exit": own.poll()}}), flush=True)
            sys.stdin.readline()  # the foreign server is stopped meanwhile
            print(json.dumps({{"answers": api_answers(url, timeout=10), "own_exit": own.poll()}}), flush=True)
        """,
        tmp_path,
    )
    try:
        started = _report(run)
        stop_process(foreigner, timeout=5)  # the other process's session ends and stops its server
        run.stdin.write("foreign server stopped\n")
        run.stdin.flush()
        after = _report(run)
        run.stdin.close()
        assert run.wait(60) == 0, run.stderr.read()[-3000:]
    finally:
        stop_process(run, timeout=5)
        run.stdout.close()
        run.stderr.close()
    story = (
        f"pids {started['listeners']} listened on our API's port {started['port']} (the foreign server was pid "
        f"{foreigner.pid}, ours {started['own']}); our own server's exit code: {started['own_exit']}; once the "
        f"foreign server stopped, our API answered: {after['answers']}"
    )
    assert started["listeners"] == sorted([started["us"], started["own"]]), story
    assert started["own_exit"] is None and started["port"] != foreign_port, story
    assert after == {"answers": True, "own_exit": None}, story
    assert listening_pids(started["port"]) == set()  # our server and its port went with the run


def test_a_reserved_port_fails_every_other_process_bind_test_until_released():
    """The reverse direction: from the moment our port is known, another process's draw cannot take it:
    Prefect's temporary-server test (plain bind) and `prefect server start`'s (SO_REUSEADDR) both fail,
    in another process. Released, the port is free again."""
    from pipelines.prefect_server import reserve_port

    probe = textwrap.dedent(
        """
        import socket, sys
        from prefect.server.api.server import SubprocessASGIServer
        port = int(sys.argv[1])
        with socket.socket() as cli_test:
            cli_test.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                cli_test.bind(("127.0.0.1", port))
                reuse = True
            except OSError:
                reuse = False
        print(SubprocessASGIServer.is_port_available(port), reuse)
        """
    )
    listener = reserve_port()
    port = listener.getsockname()[1]
    try:
        held = subprocess.run([sys.executable, "-c", probe, str(port)], capture_output=True, text=True, timeout=120)
    finally:
        listener.close()
    released = subprocess.run([sys.executable, "-c", probe, str(port)], capture_output=True, text=True, timeout=120)
    assert held.stdout.split() == ["False", "False"], held.stderr[-2000:]
    assert released.stdout.split() == ["True", "True"], released.stderr[-2000:]


def test_a_preferred_port_is_used_when_free_and_never_shared_when_taken(foreign_server):
    """The UI server's fixed port (4200 by default): ours if nobody listens there; if someone does, a
    port of our own instead (the old bind test would pass here only in the other's start-up window)."""
    from pipelines.prefect_server import reserve_port

    _, taken = foreign_server
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    on_free, on_taken = reserve_port(free), reserve_port(taken)
    try:
        assert on_free.getsockname()[1] == free
        assert on_taken.getsockname()[1] not in (taken, 0)
        assert listening_pids(free) == listening_pids(on_taken.getsockname()[1]) == {os.getpid()}
    finally:
        on_free.close()
        on_taken.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads socket owners from /proc")
def test_the_ui_server_is_our_own_even_when_its_port_is_taken(tmp_path, foreign_server):
    """`upstream demo` / `upstream schedule`: the UI server's preferred port already answers Prefect's
    health check (another process's server). We must not treat that server as ours: our own server with
    its UI starts elsewhere, its UI sends the browser to OUR API, and it stops when we leave."""
    _, taken = foreign_server
    run = _script(
        f"""
        import json, os
        from urllib.parse import urlparse
        import httpx, psutil
        from upstream.processes import listening_pids
        from pipelines.prefect_server import prefect_api, prepare_environment
        prepare_environment()

        with prefect_api(with_ui=True, port={taken}) as url:
            port = urlparse(url).port
            children = [child.pid for child in psutil.Process().children()]
            ui = httpx.get(f"http://127.0.0.1:{{port}}/ui-settings", timeout=30).json()
            print(json.dumps({{"url": url, "env_url": os.environ.get("PREFECT_API_URL"),
                               "listeners": sorted(listening_pids(port)), "us": os.getpid(), "children": children,
                               "ui_api_url": ui.get("api_url")}}), flush=True)
        print(json.dumps({{"listeners_after": sorted(listening_pids(port))}}), flush=True)
        """,
        tmp_path,
    )
    try:
        inside, after = _report(run), _report(run)
        assert run.wait(60) == 0, run.stderr.read()[-3000:]
    finally:
        stop_process(run, timeout=5)
        run.stdout.close()
        run.stderr.close()
    port = int(inside["url"].rsplit(":", 1)[1].split("/")[0])
    assert port != taken and inside["env_url"] == inside["url"]
    # Served by our one child (and held by us, with the fix): no other process listens there.
    [child] = inside["children"]
    assert child in inside["listeners"] and set(inside["listeners"]) <= {inside["us"], child}, inside
    assert inside["ui_api_url"] == inside["url"]
    assert after == {"listeners_after": []}


def test_a_server_that_cannot_start_fails_the_run_at_once_with_its_reason(tmp_path):
    """Start-up waits for OUR server, so our server's death during start-up is the answer, at once: exit
    code and last output, not a timeout minutes later. (Prefect's loop took exit 3 for a lost port race,
    drew another port and started again, so a server that cannot start was restarted until the start-up
    limit, here set to 120 s.) The Prefect database path cannot be created: the lifespan fails, exit 3."""
    log = tmp_path / "prefect-server.log"
    env = _env(tmp_path) | {
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": "sqlite+aiosqlite:////proc/no-such-dir/prefect.db",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    script = f"""
        import time
        from contextlib import contextmanager
        from pathlib import Path
        from pipelines.prefect_server import _temporary_api, prepare_environment
        prepare_environment()
        started = time.monotonic()
        try:
            with contextmanager(_temporary_api)(server_log=Path({str(log)!r})):
                print("started", flush=True)
        except Exception as exc:
            print(f"{{time.monotonic() - started:.1f}} {{type(exc).__name__}}: {{exc}}", flush=True)
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    seconds, _, failure = done.stdout.strip().partition(" ")
    prefix = "UpstreamError: the Prefect API could not start: the temporary Prefect server (pid "
    assert failure.startswith(prefix), (done.stdout, done.stderr[-3000:])
    assert "exited with code 3" in failure and failure.endswith(f"server log: {log}"), failure
    assert "no-such-dir" in log.read_text() or "Application startup failed" in log.read_text()
    assert float(seconds) < 100, seconds
