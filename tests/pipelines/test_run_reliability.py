"""Issue 17: the second county week failed with "database is locked", left a run "running" and hung.

Each test reproduces one of those conditions at small scale with real components (a real SQLite file,
real processes killed with real signals, a real temporary Prefect server) and checks what the user of a
weekly run must get instead: a clear refusal, no run left ``running``, no partial rows, exit code 2.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from pipelines.score_history import store_scores
from tests.pipelines.conftest import score_frame
from upstream.errors import UpstreamError
from upstream.processes import stop_process
from upstream.store import get_engine, score_runs, scores

ROOT = Path(__file__).resolve().parents[2]
WEEK = date(2026, 11, 23)


def _frame(n: int) -> pl.DataFrame:
    return score_frame([(f"p{i:06d}", "A" if i % 2 else "B", (i % 997) / 997, False) for i in range(n)])


def _runs(engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(score_runs.c.run_id, score_runs.c.status))]


def _score_rows(engine, run_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(scores).where(scores.c.run_id == run_id)).scalar_one()


def _python(script: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_line(process: subprocess.Popen, expected: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if line.strip() == expected:
            return
    stop_process(process, timeout=5, sig=signal.SIGKILL)
    raise AssertionError(f"the helper process never said {expected!r}: {''.join(seen)[-3000:]}")


def test_a_second_writer_is_not_locked_out_while_scores_are_stored(settings):
    """The lock itself: storing a week held SQLite's single write lock for the whole insert (one
    transaction over every resident), so any other writer of upstream.db in that window - here an API
    audit row, written the way serving does, by a second connection - got "database is locked". Now
    each chunk commits on its own and the lock is free between chunks."""
    import pipelines.score_history as publish

    engine = get_engine(settings.db_url)
    outcome: list[str] = []
    inserts = 0

    def write_between_chunks(_conn, _cursor, statement, *_args) -> None:
        nonlocal inserts
        if not statement.startswith("INSERT INTO scores"):
            return
        inserts += 1
        if inserts != 2:
            return
        # About to write the second chunk: the first is (or is not) committed by now. timeout=0: no
        # waiting, the answer is the lock's state at this exact point, so the test is deterministic.
        other = sqlite3.connect(settings.home / "upstream.db", timeout=0)
        try:
            other.execute(
                "INSERT INTO audit_log (at, key_id, role, route, status_code) VALUES (?, 'k', 'analyst', '/x', 200)",
                (datetime.now(UTC).isoformat(),),
            )
            other.commit()
            outcome.append("written")
        except sqlite3.OperationalError as exc:
            outcome.append(str(exc))
        finally:
            other.close()

    sa.event.listen(engine, "before_cursor_execute", write_between_chunks)
    try:
        run = store_scores([_frame(3 * publish._CHUNK)], WEEK, settings, "upstream-crisis", "1")
    finally:
        sa.event.remove(engine, "before_cursor_execute", write_between_chunks)
    assert outcome == ["written"]
    assert run.n_scored == 3 * publish._CHUNK
    assert _runs(engine) == [(run.run_id, "complete")]


def test_a_concurrent_run_on_the_same_home_is_refused_at_once(settings):
    """The culprit: another weekly run on the same UPSTREAM_HOME (a second process) holding upstream.db's
    write lock in its long store transaction. Before, this run's store waited out busy_timeout and failed
    with "database is locked" (three times, with the retries). Now the second run is refused at once,
    with a message naming the home, and writes nothing."""
    engine = get_engine(settings.db_url)  # creates the tables
    other_run = _python(
        f"""
        import sqlite3, sys, time
        from pathlib import Path
        home = Path({str(settings.home)!r})
        try:  # what a weekly run does first (since issue 17)
            from pipelines.run_guard import claim_home
            claim_home(home)
        except ImportError:
            pass
        db = sqlite3.connect(home / "upstream.db", isolation_level=None)
        db.execute("BEGIN IMMEDIATE")  # its store step, mid-insert: holds the write lock
        db.execute("INSERT INTO score_runs (run_id, week, index_date, target, model_name, model_version,"
                   " status, started_at) VALUES ('other', '2026-W48', '2026-11-23', 'crisis', 'm', '1',"
                   " 'running', '2026-11-29 20:56:11')")
        print("holding", flush=True)
        time.sleep(600)
        """
    )
    try:
        _wait_for_line(other_run, "holding")
        started = time.monotonic()
        with pytest.raises(UpstreamError, match="another weekly run is using"):
            store_scores([_frame(10)], WEEK, settings, "upstream-crisis", "1")
        assert time.monotonic() - started < 5
    finally:
        stop_process(other_run, timeout=5, sig=signal.SIGKILL)
    assert _runs(engine) == []  # ours wrote nothing; theirs was never committed (killed mid-transaction)


def test_a_run_killed_mid_write_is_marked_failed_and_its_rows_removed(settings):
    """SIGKILL (what the OOM killer sends) in the middle of storing scores: nothing runs on the way out,
    so the next run's start-up must find the run "running", mark it failed and delete its partial rows."""
    from pipelines.run_guard import begin_weekly_run, release_home

    writer = _python(
        f"""
        import time
        from datetime import date
        import sqlalchemy as sa
        import pipelines.score_history as publish
        from pipelines.score_history import store_scores
        from tests.pipelines.conftest import score_frame
        from upstream.settings import Settings
        from upstream.store import get_engine

        publish._CHUNK = 100
        settings = Settings(home={str(settings.home)!r})
        engine = get_engine(settings.db_url)
        inserts = 0

        def before_insert(_conn, _cursor, statement, *_args):
            global inserts
            if statement.startswith("INSERT INTO scores"):
                inserts += 1
                if inserts == 4:  # 3 chunks of 100 scores are committed, the 4th is about to be written
                    print("3 chunks committed", flush=True)
                    time.sleep(600)

        sa.event.listen(engine, "before_cursor_execute", before_insert)
        frame = score_frame([(f"p{{i:04d}}", "A", i / 1000, False) for i in range(1000)])
        store_scores([frame], date(2026, 11, 23), settings, "upstream-crisis", "1")
        """
    )
    try:
        _wait_for_line(writer, "3 chunks committed")
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        stop_process(writer, timeout=5, sig=signal.SIGKILL)
    assert writer.returncode == -signal.SIGKILL

    engine = get_engine(settings.db_url)
    [(run_id, status)] = _runs(engine)
    assert status == "running"
    assert _score_rows(engine, run_id) == 300  # 3 committed chunks of 100: partial, and not published

    try:
        assert begin_weekly_run(settings) == [run_id]  # the kernel released the dead run's lock
    finally:
        release_home(settings.home)
    assert _runs(engine) == [(run_id, "failed")]
    assert _score_rows(engine, run_id) == 0


def test_a_store_that_fails_on_the_way_is_marked_failed_with_no_rows(settings):
    """An exception between chunks (disk full, a lock): the run is failed and its partial rows gone."""
    import pipelines.score_history as publish

    engine = get_engine(settings.db_url)
    inserts = 0

    def fail_third_chunk(_conn, _cursor, statement, *_args) -> None:
        nonlocal inserts
        if statement.startswith("INSERT INTO scores"):
            inserts += 1
            if inserts == 3:
                raise OSError("disk full (drill)")

    sa.event.listen(engine, "before_cursor_execute", fail_third_chunk)
    try:
        with pytest.raises(OSError, match="drill"):
            store_scores([_frame(5 * publish._CHUNK)], WEEK, settings, "upstream-crisis", "1")
    finally:
        sa.event.remove(engine, "before_cursor_execute", fail_third_chunk)
    [(run_id, status)] = _runs(engine)
    assert status == "failed"
    assert _score_rows(engine, run_id) == 0


@pytest.mark.skipif(not hasattr(os, "setsid"), reason="POSIX only")
def test_run_exits_2_within_a_minute_when_the_prefect_server_dies(tmp_path, small_delivery_gate):
    """`upstream run` with its own temporary Prefect server (no PREFECT_API_URL); the server is killed
    (SIGKILL) while the run is in progress. Before: Prefect's client retried the dead API for many
    minutes. Now: exit code 2 and one line saying why, within a minute, and no run left running."""
    import psutil  # distributed's dependency: always installed

    from synthetic import generate

    raw = tmp_path / "raw"
    generate.generate_delivery(raw, residents=1500, seed=3)
    home = tmp_path / "home"
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_API", "UPSTREAM_CONFIG"))
    }
    env |= {
        "UPSTREAM_HOME": str(home),
        "PREFECT_HOME": str(tmp_path / "prefect"),  # its own Prefect DB, not ~/.prefect
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONUNBUFFERED": "1",
        "UPSTREAM_GATE__CALIBRATION_SLOPE_MIN": "0.3",
        "UPSTREAM_GATE__CALIBRATION_SLOPE_MAX": "3.0",
        "UPSTREAM_GATE__MAX_SUBGROUP_AUROC_GAP": "1.0",
    }
    run = subprocess.Popen(
        [sys.executable, "-m", "upstream.cli", "run", "--raw", str(raw), "--train", "always"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Mid-run = the weekly flow has started writing under UPSTREAM_HOME.
        deadline = time.monotonic() + 600
        while not (home.is_dir() and any(home.iterdir())):
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the weekly flow never started"
            time.sleep(0.5)
        servers = [
            child
            for child in psutil.Process(run.pid).children(recursive=True)
            if "prefect.server" in " ".join(child.cmdline())
        ]
        assert len(servers) == 1, [c.cmdline() for c in servers]
        servers[0].kill()
        killed_at = time.monotonic()
        stdout, stderr = run.communicate(timeout=120)
        took = time.monotonic() - killed_at
    finally:
        stop_process(run, timeout=5, sig=signal.SIGKILL)
    assert run.returncode == 2, (stdout[-2000:], stderr[-4000:])
    assert took < 60, took
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("upstream run: error: the temporary Prefect server"), stderr[-4000:]
    assert "stopped" in last and "unchanged" in last
    engine = get_engine(f"sqlite:///{home / 'upstream.db'}")
    try:
        assert [status for _, status in _runs(engine) if status == "running"] == []
    finally:
        engine.dispose()


def test_watchdog_gives_a_silent_api_its_grace_then_reports_it():
    """An external API (no process of ours to watch) that stops answering: reported once, after the grace."""
    import socket
    import threading

    from pipelines.prefect_server import ApiWatchdog

    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reasons: list[str] = []
    reported = threading.Event()

    def lost(reason: str) -> None:
        reasons.append(reason)
        reported.set()

    watchdog = ApiWatchdog(lost, grace=1.5, interval=0.2, api=(f"http://127.0.0.1:{port}/api", None))
    started = time.monotonic()
    watchdog.start()
    assert reported.wait(30)
    waited = time.monotonic() - started
    watchdog.join(5)
    assert 1.5 <= waited < 30
    assert len(reasons) == 1 and reasons[0].startswith(f"the Prefect API at http://127.0.0.1:{port}/api has not")
