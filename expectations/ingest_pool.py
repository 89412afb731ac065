"""Local ingest on every core: worker processes validate chunks of the sources, then this process merges.

Why processes: GX is Python (one core per process) and its pandas execution engine holds one active batch
per datasource, so two sources cannot be validated in threads of one GX context. Each worker has its own GX
project and runs the very chunk functions a Dask cluster runs (``expectations.chunked``): it reads its share
of a raw file itself and writes its own clean and quarantine parts, so only paths and counts travel between
processes, never frames. Outputs are identical to the one-process ``ingest_delivery`` (tested): the same
clean frames in file order, quarantine rows and reasons, summary and re-identification map.

How the work is shared: residents first, cut into one chunk per worker (every event chunk checks against the
valid residents); then every event chunk at once, largest first, so the GP events (about 70% of a
delivery's rows) are cut into several chunks and no core waits at the end. This process merges each source
as soon as its chunks are back, while the workers go on with the next chunks.

How workers start: from a fork server (``multiprocessing``'s "forkserver") that imported GX once
(``expectations._ingest_preload``), so a worker costs a fork, not GX's 2.2 CPU s import. The server is a
fresh single-threaded process, never this one (which holds Prefect's and polars' threads): forking a
process with live threads can leave a lock held forever in the child. The server's thread count is checked
before any chunk is handed out; if it is not one (another library started it with threads), the pool uses
"spawn" instead (each worker imports GX itself: slower, always safe). Like any spawn or forkserver pool, a
script that runs ingest must keep its top level import-safe (``if __name__ == "__main__":``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from datetime import date
from pathlib import Path

import polars as pl

from expectations.chunked import (
    ChunkDone,
    IngestPlan,
    SourceChunk,
    build_data_docs,
    discard_work,
    finish_ingest,
    ingest_chunk,
    judge_column_types,
    merge_people,
    merge_source,
    plan_ingest,
)
from expectations.suites import Mode
from upstream.errors import UpstreamError
from upstream.settings import Settings

log = logging.getLogger(__name__)

_PRELOAD = "expectations._ingest_preload"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


#: Fewest usable cores for which an unset ``ingest.workers`` means the pool (see ``ingest_workers``).
POOL_MIN_CORES = 3


def ingest_workers(settings: Settings) -> int:
    """``ingest.workers``; when it is not set, every usable core if there are at least ``POOL_MIN_CORES``.

    Why not on two cores: the one-process path already uses about 1.6 of them on average (polars' threads,
    the writer thread), and the pool's own work (about +20% CPU at 1.9M residents) ate the second core's gain:
    four paired runs at 1.9M on the busy 2-core machine gave -18%, -11%, +3%, +11% wall, and on the quiet
    machine two workers took 45.2-45.7 s against one's 40.0-40.3 s (bench/README.md, issue 15 session 6 and lead
    session 6). Set ``ingest.workers = 2`` to use it there anyway."""
    if settings.ingest.workers is not None:
        return settings.ingest.workers
    cores = usable_cores()
    return cores if cores >= POOL_MIN_CORES else 1


def plan_for_pool(raw_dir: Path, out_dir: Path, as_of: date, settings: Settings) -> IngestPlan | None:
    """The pool's plan (probes every file first), or None when the one-process path should run: one
    worker, or a delivery under ``ingest.pool_min_rows`` rows."""
    workers = ingest_workers(settings)
    if workers < 2:
        return None
    plan = plan_ingest(raw_dir, out_dir, as_of, settings.ingest.gx_chunk_rows or 4_000_000,
                       residents_chunks=workers, event_shares=workers * settings.ingest.pool_chunks_per_worker)
    if sum(plan.rows_in.values()) < settings.ingest.pool_min_rows:
        return None
    return plan


def start_fork_server(settings: Settings, raw_dir: Path) -> None:
    """Start the workers' fork server now, so GX's import (2.2 CPU s, once per process) overlaps other start-up
    work (the weekly CLI calls this while the Prefect server starts). Nothing when ingest of ``raw_dir`` will
    run in one process (one worker, or fewer parquet rows than ``ingest.pool_min_rows``, read from the files'
    footers; a CSV delivery is not counted here, its pool starts when ingest does)."""
    if ingest_workers(settings) < 2:
        return
    rows = 0
    for path in Path(raw_dir).glob("*.parquet"):
        try:
            rows += pl.scan_parquet(path).select(pl.len()).collect().item()
        except Exception:  # a bad file is ingest's to report, with its own message
            return
    if rows < settings.ingest.pool_min_rows:
        return
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload([_PRELOAD])
    forkserver.ensure_running()


#: The fork server of this process's ingest pools, once one has started (``fork_server_cpu_seconds``).
_SERVER_PID: int | None = None


def fork_server_cpu_seconds() -> float:
    """CPU seconds of the workers' fork server and of every worker it has forked and reaped so far.

    Why: workers are the server's children, not this process's, so ``RUSAGE_CHILDREN`` never counts them and
    a bench reading only ``getrusage`` would report ingest on both cores as almost free. 0 before any pool."""
    if _SERVER_PID is None:
        return 0.0
    try:
        fields = Path(f"/proc/{_SERVER_PID}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


# --- worker side (module-level functions: what a worker process is asked to run) -------------------------


def _worker_ready() -> tuple[int, int]:
    """The pid of this worker's parent (the fork server) and how many threads it has: 1 means the fork was
    safe (the server never starts a thread after its preload, so the count now is the count at the fork)."""
    import expectations.chunked  # noqa: F401  (polars and the chunk code, imported after the fork)

    try:
        threads = len(os.listdir(f"/proc/{os.getppid()}/task"))
    except OSError:
        threads = -1  # no /proc: cannot tell, so not proven safe
    return os.getppid(), threads


def _run_chunk(plan: IngestPlan, chunk: SourceChunk, settings: Settings, mode: Mode) -> ChunkDone:
    return ingest_chunk(plan, chunk, settings, mode=mode)


# --- the pool -----------------------------------------------------------------------------------------


class IngestPool:
    """Worker processes for one ingest. ``stop()`` ends them all, at once when something failed."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.start_method = "forkserver"
        self.executor = self._start("forkserver")
        # One call per worker: the pool starts them all now (GX already loaded), and the first answer says
        # how many threads the fork server had when it forked (its only thread is the one that forks).
        ready = [self.executor.submit(_worker_ready) for _ in range(workers)]
        global _SERVER_PID
        self.server_pid, self.server_threads = ready[0].result()
        _SERVER_PID = self.server_pid
        if self.server_threads != 1:
            _SERVER_PID = None  # spawned workers are this process's children: RUSAGE_CHILDREN counts them
            log.warning("ingest pool: the fork server has %d threads; using spawn instead", self.server_threads)
            self.stop(failed=True)
            self.start_method = "spawn"
            self.executor = self._start("spawn")
            ready = [self.executor.submit(_worker_ready) for _ in range(workers)]
        for future in ready:
            future.result()

    def _start(self, method: str) -> ProcessPoolExecutor:
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            # Only our preload (not the default "__main__": a caller's script may import polars, which
            # starts threads). No effect if the server already runs; the thread check then decides.
            context.set_forkserver_preload([_PRELOAD])
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=context)

    def submit(self, plan: IngestPlan, chunk: SourceChunk, settings: Settings, mode: Mode) -> Future[ChunkDone]:
        return self.executor.submit(_run_chunk, plan, chunk, settings, mode)

    def stop(self, *, failed: bool = False) -> None:
        """Wait for the workers to exit; after a failure, cancel what is queued and end running chunks now
        (a chunk of GP events can run for seconds, and its output is being discarded anyway)."""
        if failed:
            # ``ProcessPoolExecutor`` has no public "terminate" before Python 3.14 (``terminate_workers``).
            terminate = getattr(self.executor, "terminate_workers", None)
            if terminate is not None:
                terminate()
            else:
                processes = list((getattr(self.executor, "_processes", None) or {}).values())
                for process in processes:
                    process.terminate()
                for process in processes:
                    process.join(timeout=10)
                    if process.is_alive():
                        process.kill()
                        process.join()
        self.executor.shutdown(wait=True, cancel_futures=failed)


def ingest_in_processes(
    plan: IngestPlan,
    out_dir: Path,
    settings: Settings,
    previous_summary: dict | None,
    *,
    mode: Mode = "precomputed",
    build_docs: bool = True,
) -> dict:
    """Run ``plan`` on ``ingest.workers`` processes and finish it here; returns the validation summary.

    Raises what a one-process ingest raises (a bad file: its file, column and problem, no worker traceback);
    after any failure no worker is left running and nothing is left behind."""
    started = time.perf_counter()
    pool: IngestPool | None = None
    done: list[ChunkDone] = []
    try:
        pool = IngestPool(ingest_workers(settings))
        log.info("ingest pool: %d workers (%s) ready in %.1fs", pool.workers, pool.start_method,
                 time.perf_counter() - started)
        done += _run_all(pool, plan, plan.residents, settings, mode, merge=False)
        judge_column_types(plan, done, ["residents"])  # as a whole-file read would, before any event source
        merge_people(plan)  # what event chunks need; the residents' own files are written while they run
        # Costliest first (rows x checks), so the last chunks are short ones and no core idles at the end.
        events = sorted(plan.events, key=plan.chunk_cost, reverse=True)
        done += _run_all(pool, plan, events, settings, mode,
                         first=lambda: merge_source(plan, "residents", people=False))
        if build_docs:
            pool.executor.submit(build_data_docs, plan, done, settings, mode=mode).result()
        pool.stop()
        pool = None
        log.info("ingest pool: chunks done in %.1fs, %.1f CPU s in workers, largest worker %.2f GiB",
                 time.perf_counter() - started, sum(d.cpu_seconds for d in done),
                 max(d.peak_rss_bytes for d in done) / 2**30)
    except BaseException as exc:
        if pool is not None:
            pool.stop(failed=True)
        discard_work(plan)
        if isinstance(exc, UpstreamError):
            # The worker's traceback (``_RemoteTraceback``) is not the user's business: the message names the
            # file, column and problem, as a one-process ingest's does.
            raise exc from None
        raise
    return finish_ingest(plan, done, out_dir, settings, previous_summary, mode=mode, build_docs=False)


def _run_all(pool: IngestPool, plan: IngestPlan, chunks: list[SourceChunk], settings: Settings, mode: Mode, *,
             merge: bool = True, first: Callable[[], object] | None = None) -> list[ChunkDone]:
    """Hand out ``chunks``, run ``first`` here while they run, and (``merge``) merge each source here as soon
    as its last chunk is back."""
    waiting = {pool.submit(plan, chunk, settings, mode): chunk for chunk in chunks}
    if first is not None:
        first()
    left = {source: len(plan.chunks_of(source)) for source in dict.fromkeys(c.source for c in chunks)}
    done: list[ChunkDone] = []
    while waiting:
        finished, _ = wait(waiting, return_when=FIRST_COMPLETED)
        for future in finished:
            chunk = waiting.pop(future)
            done.append(future.result())  # a failed chunk raises here: the caller stops the pool
            log.info("ingest pool: %s chunk %d/%d, %d rows: %.1fs, %.1f CPU s", chunk.source, chunk.index + 1,
                     chunk.of, done[-1].stats.rows_in, done[-1].seconds, done[-1].cpu_seconds)
            left[chunk.source] -= 1
            if merge and left[chunk.source] == 0:
                merge_source(plan, chunk.source)
    return done
