"""Which Prefect API the CLI talks to.

- ``PREFECT_API_URL`` set (a ``prefect server start`` somewhere, or Cloud): use it.
- Otherwise, for a one-off ``upstream run``: Prefect 3.8's ephemeral mode starts a temporary API
  (no UI) for the life of the process; runs are still recorded in the local Prefect database
  (``~/.prefect``, or ``PREFECT_HOME``), so a later ``prefect server start`` shows them.
- For ``upstream schedule`` and ``upstream demo``, which should be watched in the UI: start a local
  ``prefect server start`` (with UI) as a child process, and stop it on exit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from upstream.errors import UpstreamError
from upstream.processes import stop_process

DEFAULT_PORT = 4200


def prepare_environment() -> None:
    """Call before Prefect is imported: no telemetry, and a patient ephemeral API (its default 20 s start-up
    limit is too short on a busy 2-core machine)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port(preferred: int) -> int:
    if _port_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(api_url: str, process: subprocess.Popen, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UpstreamError(f"the local Prefect server exited with code {process.returncode}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise UpstreamError(f"the local Prefect server did not answer at {api_url} within {timeout:.0f} s")


def configured_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value() or None


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> None:
    """A plain ``kill`` must still stop the server we started (the finally below), not orphan it."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


@contextmanager
def prefect_api(with_ui: bool, port: int = DEFAULT_PORT, timeout: float = 120) -> Iterator[str | None]:
    """Yield the API URL in use (None = Prefect's ephemeral mode). Starts a UI server if asked and needed."""
    existing = configured_api_url()
    if existing or not with_ui:
        yield existing
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    _stop_on_sigterm()
    port = _free_port(port)
    api_url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "true"}
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_healthy(api_url, process, timeout)
        os.environ["PREFECT_API_URL"] = api_url  # child processes (e.g. Dask workers, uvicorn) inherit it
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield api_url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        stop_process(process, timeout=15)
