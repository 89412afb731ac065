"""Which Prefect API the CLI talks to.

- ``PREFECT_API_URL`` set (a ``prefect server start`` somewhere, or Cloud): use it.
- Otherwise, for a one-off ``upstream run``: a temporary API (no UI) for the life of the process,
  started explicitly (``TemporaryServer``: Prefect's app under uvicorn, as its ephemeral mode runs it) so that
  ``ApiWatchdog`` holds the server process and notices at once if it dies; runs are still recorded in
  the local Prefect database (``~/.prefect``, or ``PREFECT_HOME``), so a later ``prefect server start``
  shows them. It runs through ``pipelines.prefect_server_launcher`` with its output in a log file, so a
  death mid-run says how and, for a signal, who sent it. ``watched_prefect_api`` gives a run the API and
  its watchdog together, in the only safe order.
- For ``upstream schedule`` and ``upstream demo``, which should be watched in the UI: a local Prefect
  server with its UI (what ``prefect server start`` runs) as a child process, stopped on exit.

Both servers get their port from ``reserve_port``: bound and listening in THIS process before the server
starts, then handed to it (issue 17's root cause: a port chosen by a bind test and bound seconds later
could be taken by another process meanwhile, and our start-up then trusted the other process's server).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from upstream.errors import UpstreamError
from upstream.processes import stop_process

DEFAULT_PORT = 4200


def prepare_environment() -> None:
    """Call before Prefect is imported: no telemetry, and a patient ephemeral API (its default 20 s start-up
    limit is too short on a busy 2-core machine)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def reserve_port(preferred: int | None = None) -> socket.socket:
    """A TCP socket on 127.0.0.1, bound and listening now: on ``preferred`` if nobody listens there, else on
    a port the kernel picks. The server we start serves on this very socket (``launch_server``).

    WHY: a bind test ("is the port free?") followed by a bind in another process seconds later is a race
    on a shared machine (issue 17). Bound here, the port is ours before anyone can see it: another
    process's bind test on it fails (even with SO_REUSEADDR: Linux refuses a port with a listener), and a
    kernel-picked port comes from the ephemeral range (32768-60999 here), apart from Prefect's 8000-8999.
    This process keeps its copy until the server is stopped, so the port stays ours even if the server
    dies: nothing else can appear there while a run still believes the API is its own."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if preferred:
            # Only for the fixed UI port: lets a new server reuse it while the last one's connections sit in
            # TIME_WAIT; a live listener there still makes this bind fail.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind(("127.0.0.1", preferred))
            except OSError:
                listener.close()
                return reserve_port(None)
        else:
            listener.bind(("127.0.0.1", 0))
        listener.listen(128)
    except BaseException:
        listener.close()
        raise
    return listener


def launch_server(
    listener: socket.socket,
    env: dict[str, str],
    log_level: str = "error",
    output: Path | None = None,
    quiet: bool = False,
) -> subprocess.Popen:
    """Prefect's API server (``pipelines.prefect_server_launcher``) serving on ``listener``, which only it
    inherits. ``output``: a file for its stdout and stderr, overwritten; else they are ours, or discarded
    if ``quiet`` (the UI server's welcome text)."""
    log_file: IO[bytes] | None = None
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        log_file = output.open("wb")  # the child keeps its own copy of the descriptor
    target = log_file if log_file is not None else (subprocess.DEVNULL if quiet else None)
    fd = listener.fileno()
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "pipelines.prefect_server_launcher", "--fd", str(fd), "--log-level", log_level,
             "--parent-pid", str(os.getpid())],
            env=env,
            pass_fds=(fd,),
            stdout=target,
            stderr=subprocess.STDOUT if log_file is not None else target,
        )
    finally:
        if log_file is not None:
            log_file.close()


def wait_until_serving(api_url: str, process: subprocess.Popen, timeout: float, server_log: Path | None = None) -> None:
    """Return once OUR server answers ``/health``; fail at once, saying how, if it exits first.

    WHY this is an identity check and Prefect's start-up loop was not: the port is held by this process
    (``reserve_port``) and only our child inherited it, so a 200 there can only come from our child, and
    the child is checked alive after it. Prefect's loop took a 200 from whichever process listened on a
    port it had merely tested, and only looked for its own child's exit 3 in between (issue 17)."""
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise UpstreamError(f"the Prefect API could not start: {describe_server_exit(process, server_log)}")
            try:
                answered = client.get(f"{api_url}/health").status_code == 200
            except httpx.HTTPError:
                answered = False
            if answered and process.poll() is None:
                return
            time.sleep(0.1)  # Prefect's own cadence: start-up is not slowed by the check
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
def prefect_api(
    with_ui: bool, port: int = DEFAULT_PORT, timeout: float = 120, server_log: Path | None = None
) -> Iterator[str | None]:
    """Yield the API URL in use (None = Prefect's ephemeral mode). Starts a UI server if asked and needed.
    ``server_log``: where the temporary (no UI) server's output goes, overwritten each run."""
    existing = configured_api_url()
    if existing:
        yield existing
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if not with_ui:
        yield from _temporary_api(server_log)
        return

    _stop_on_sigterm()
    listener = reserve_port(port)
    api_url = f"http://127.0.0.1:{listener.getsockname()[1]}/api"
    # What `prefect server start` sets for its one uvicorn (UI on, full server), and where the UI's pages
    # must send the browser's API calls (Prefect would otherwise derive it from its default port, 4200).
    env = {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "true",
        "PREFECT_SERVER_UI_ENABLED": "true",
        "PREFECT__SERVER_FINAL": "1",
        "PREFECT_UI_API_URL": api_url,
    }
    process = None
    try:
        process = launch_server(listener, env, log_level="warning", quiet=True)
        wait_until_serving(api_url, process, timeout)
        os.environ["PREFECT_API_URL"] = api_url  # child processes (e.g. Dask workers, uvicorn) inherit it
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield api_url
    finally:
        if process is not None:
            _send_queued_logs_and_events()
            os.environ.pop("PREFECT_API_URL", None)
            stop_process(process, timeout=15)
        listener.close()


@contextmanager
def watched_prefect_api(
    on_lost: Callable[[str], None], grace: float = 30.0, interval: float = 2.0, server_log: Path | None = None
) -> Iterator[str | None]:
    """The Prefect API for one weekly run, with an ``ApiWatchdog`` on it for exactly the life of the block.

    WHY one context manager owns both: the watchdog must be disarmed before the server we started is
    stopped on the way out, or our own SIGTERM to it reads as the server dying and a clean run exits 2
    (issue 17's county pass). Here the order is fixed, on success and on error alike; callers cannot get
    it wrong. ``server_log``: see ``prefect_api``; if the server dies, the loss names its signal, its
    sender when known, and this file."""
    with prefect_api(with_ui=False, server_log=server_log) as api_url:
        watchdog = ApiWatchdog(on_lost, grace=grace, interval=interval)
        watchdog.start()
        try:
            yield api_url
        finally:
            watchdog.stop()


class TemporaryServer:
    """The temporary API server of one run: Prefect's app under uvicorn (``launch_server``) on a port this
    process already holds (``reserve_port``), launched through ``pipelines.prefect_server_launcher`` with its
    output in a log file, so that a server that dies leaves its signal's sender and its last words behind.

    WHY not a subclass of Prefect's ``SubprocessASGIServer`` (as before session 6): of that class we used only
    its URL and its stop, and subclassing it meant importing Prefect's whole server app into the run's own
    process, 1.9 CPU s (3 s wall) on the path to the first step of every weekly run (bench/README.md, issue 15
    session 6). The server process imports the app anyway. Its stop is the one Prefect's did: SIGTERM, 5 s,
    then SIGKILL, and the port goes back only after."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.log_path = log_path
        self.listener: socket.socket | None = None
        self.port: int | None = None
        self.server_process: subprocess.Popen | None = None
        self.running = False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, timeout: int | None = None) -> None:
        """No port drawn by a bind test, no retry on exit 3 (a bind cannot fail: the socket is bound), and
        start-up ends only when our own child answers. A server this process launched ahead of need
        (``launch_temporary_api``) is adopted rather than started again."""
        import atexit

        from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

        if self.running:
            return
        launched = _adopt_launched(self.log_path)
        self.listener = launched[0] if launched else reserve_port()
        self.port = self.listener.getsockname()[1]
        self.running = True
        try:
            self.server_process = launched[1] if launched else launch_server(
                self.listener, _temporary_server_env(), output=self.log_path)
            atexit.register(self.stop)
            limit = timeout or PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
            wait_until_serving(self.api_url, self.server_process, limit, self.log_path)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.server_process is not None:
            stop_process(self.server_process, timeout=5)
            self.server_process = None
        self.running = False
        if self.listener is not None:  # only now may the port go back to the machine
            self.listener.close()
            self.listener = None


def _temporary_server_env() -> dict[str, str]:
    """The temporary API server's environment: that of Prefect 3.8's own ``_run_uvicorn_command``."""
    from prefect.settings import get_current_settings

    return {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }


#: The temporary API server ``launch_temporary_api`` started ahead of need: listener, process, log path.
_launched: dict[str, object] = {}


def launch_temporary_api(server_log: Path | None = None) -> None:
    """Start the temporary API server's process now and return at once; the run's ``watched_prefect_api``
    (``_temporary_api``) adopts it and waits for it then. Nothing happens when an API is configured.

    WHY: the server costs 3-7 CPU s to start (importing Prefect's app, opening its database) and the run's
    own imports (flows, MLflow, GX) about 5; one after the other they were ~10-15 s of every weekly run's wall
    before its first step. Launched before those imports, the server starts on the other core meanwhile
    (bench/README.md, issue 15 session 5). The port is reserved here as ``reserve_port`` always does; a launched
    server that is never adopted is stopped at exit (and stops itself if this process dies)."""
    import atexit

    if _launched or configured_api_url():
        return
    listener = reserve_port()
    try:
        process = launch_server(listener, _temporary_server_env(), output=server_log)
    except BaseException:
        listener.close()
        raise
    _launched.update(listener=listener, process=process, log=server_log)
    atexit.register(_discard_launched)


def _adopt_launched(server_log: Path | None) -> tuple[socket.socket, subprocess.Popen] | None:
    """The server ``launch_temporary_api`` started, if it is still running and logs where this run wants;
    else None (one that died or logs elsewhere is stopped, and the caller starts its own)."""
    if not _launched:
        return None
    listener, process, log = _launched["listener"], _launched["process"], _launched["log"]
    assert isinstance(listener, socket.socket) and isinstance(process, subprocess.Popen)
    if process.poll() is None and log == server_log:
        _launched.clear()
        return listener, process
    _discard_launched()
    return None


def _discard_launched() -> None:
    """Stop a launched server nobody adopted, and give its port back."""
    if not _launched:
        return
    listener, process = _launched.pop("listener"), _launched.pop("process")
    _launched.clear()
    assert isinstance(listener, socket.socket) and isinstance(process, subprocess.Popen)
    stop_process(process, timeout=15)
    listener.close()


def _send_queued_logs_and_events(timeout: float = 10.0) -> None:
    """Let Prefect's background workers send what they hold while our server still answers.

    WHY: stopped first, the server leaves the flow's last log lines and events queued, and Prefect's exit
    hook retries them against it with back-off ("--- Error logging to API ---"): the failed county week's
    process took 76 s to exit. Bounded, and never an error of its own: the run's outcome is decided."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=timeout)


def _temporary_api(server_log: Path | None = None) -> Iterator[None]:
    """Prefect's temporary API server, started now rather than lazily on the first client call, so the
    process and URL are known to ``current_api`` (and the watchdog) for the whole run."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = TemporaryServer(server_log)
    server.start()
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url
    _current["url"], _current["process"], _current["log"] = server.api_url, server.server_process, server_log
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield None
    finally:
        _current.clear()
        _send_queued_logs_and_events()
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
        server.stop()


#: The temporary API this process started (``url``, ``process``), while it runs.
_current: dict[str, object] = {}


def current_api() -> tuple[str | None, subprocess.Popen | None]:
    """(API URL, server process if this process started it) of the Prefect API in use."""
    url = _current.get("url") or configured_api_url()
    process = _current.get("process")
    return (str(url) if url else None), (process if isinstance(process, subprocess.Popen) else None)


def _log_tail(path: Path, limit: int = 16_384) -> list[str]:
    try:
        with path.open("rb") as log:
            log.seek(max(0, path.stat().st_size - limit))
            return [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return []


def describe_server_exit(process: subprocess.Popen, server_log: Path | None = None) -> str:
    """One phrase for a server process that has ended: how (exit code, or signal by name), who sent the
    signal if the launcher saw it, else the server's last output, and where its log is."""
    code = process.returncode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        how = f"was stopped by {name} (exit code {code})"
        if -code == signal.SIGKILL:
            how += "; SIGKILL comes from the kernel's OOM killer (see dmesg) or a kill -9"
    else:
        how = f"exited with code {code}"
    phrase = f"the temporary Prefect server (pid {process.pid}) {how}"
    if server_log is None:
        return phrase
    lines = _log_tail(server_log)
    senders = [line for line in lines if line.startswith("upstream: Prefect server") and " received " in line]
    if senders:
        phrase += f"; it {senders[-1][senders[-1].index('received ') :]}"
    elif lines:
        phrase += f"; its last output: {' | '.join(lines[-3:])[-400:]}"
    return f"{phrase}; server log: {server_log}"


def api_answers(api_url: str, timeout: float = 5.0) -> bool:
    import httpx

    try:
        return httpx.get(f"{api_url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


class ApiWatchdog(threading.Thread):
    """Calls ``on_lost(reason)`` once if the Prefect API goes away while a run is in progress.

    WHY: when the API disappears, Prefect's client retries every call with back-off (about 75 s per
    call, several calls per flow, then more at interpreter exit), so a run whose server died sat
    silent for many minutes instead of failing. The watchdog notices within seconds: at once if the
    server process we started has exited, after ``grace`` seconds of failed health checks otherwise
    (a server starved of CPU on a busy 2-core machine can be slow to answer, so one miss is not death).
    """

    def __init__(
        self,
        on_lost: Callable[[str], None],
        grace: float = 30.0,
        interval: float = 2.0,
        api: tuple[str | None, subprocess.Popen | None] | None = None,
    ) -> None:
        super().__init__(name="prefect-api-watchdog", daemon=True)
        self.on_lost, self.grace, self.interval = on_lost, grace, interval
        self.api_url, self.process = api if api is not None else current_api()
        log = _current.get("log") if api is None else None
        self.server_log = log if isinstance(log, Path) else None
        self._stopped = threading.Event()

    def stop(self, timeout: float = 10.0) -> None:
        """Disarm, and wait (bounded) for a look in progress to end: once this returns, nothing this
        watchdog sees (e.g. the server we are about to stop ourselves) is reported as a loss."""
        self._stopped.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout)

    def check(self, silent_since: float | None) -> tuple[str | None, float | None]:
        """One look: (reason the API is lost or None, when it went silent)."""
        if self.process is not None and self.process.poll() is not None:
            return describe_server_exit(self.process, self.server_log), None
        if self.api_url is None or api_answers(self.api_url, timeout=min(5.0, self.grace)):
            return None, None
        now = time.monotonic()
        silent_since = silent_since or now
        if now - silent_since >= self.grace:
            return f"the Prefect API at {self.api_url} has not answered for {now - silent_since:.0f} s", silent_since
        return None, silent_since

    def run(self) -> None:
        silent_since: float | None = None
        while not self._stopped.wait(self.interval):
            reason, silent_since = self.check(silent_since)
            if reason and not self._stopped.is_set():
                self.on_lost(reason)
                return
