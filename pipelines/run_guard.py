"""One weekly run per ``UPSTREAM_HOME`` at a time (the clean-up of runs that died, which needs the lock, is
``pipelines.score_history.begin_weekly_run``: this module knows the lock, not the score tables).

WHY: score history lives in one SQLite file with one write lock. Two weekly runs on the same home (two
sessions starting the documented benchmark with the same ``--workdir``, a schedule plus a manual
``upstream run``) interleave their writes: one run's long store transaction makes the other's writes
fail with "database is locked" after ``busy_timeout``, and the loser's run can be left ``running``.
An OS file lock (``flock``) on ``HOME/.weekly-run.lock`` makes the second run stop at once with a clear
message instead; the kernel drops the lock when its process dies, however it dies (even SIGKILL), so
a crashed run never blocks the next one. Holding the lock also makes every ``running`` run in the
database provably abandoned, so the next run's start-up can mark it failed and remove its rows.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from upstream.errors import UpstreamError
from upstream.settings import Settings

LOCK_NAME = ".weekly-run.lock"

#: Lock files this process holds, by resolved path (the fd stays open for the life of the process, or
#: until ``release_home``): the two weeks of a benchmark or a long ``upstream schedule`` take it once.
_held: dict[Path, int] = {}


def claim_home(home: Path) -> None:
    """Take the home's weekly-run lock (idempotent within a process); refuse if another process has it."""
    path = (home / LOCK_NAME).resolve()
    if path in _held:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise UpstreamError(
            f"another weekly run is using {home} ({holder}); wait for it to finish or stop it "
            "(two runs on one home would block each other's database writes)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
    _held[path] = fd


def release_home(home: Path) -> None:
    """Give the lock back (tests and long-lived callers; process exit also releases it)."""
    fd = _held.pop((home / LOCK_NAME).resolve(), None)
    if fd is not None:
        os.close(fd)


def database_in_home(settings: Settings) -> bool:
    """True for the default SQLite file under the home, the database the home's lock protects."""
    return settings.database_url is None
