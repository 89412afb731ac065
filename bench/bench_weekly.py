"""Benchmark: the whole weekly flow (ingest + validation, features, train, score, lists) on N residents.

Goal (issue 6): 280k residents in under 5 minutes including validation. Prints the wall time of each
step and the ratio of the scoring week (no training) to the 300 s goal, for a cold week with training
and a second week scored with that champion.

    .venv/bin/python bench/bench_weekly.py --residents 280000
    .venv/bin/python bench/bench_weekly.py --residents 1900000 --train-sample 200000   # lead only

Synthetic delivery generation is not timed (it stands in for the council's data warehouse).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from upstream.cli import no_phone_home

GOAL_SECONDS = 300.0
PROCESS_STARTED = time.perf_counter()  # what a weekly run costs before its first step counts too


def _generator():
    """Imported late: the generator is a separate package (and heavy)."""
    from synthetic.generate import generate_delivery

    return generate_delivery


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children: on a shared, overloaded machine this
    says what the run cost, where wall time mostly says how busy the machine was."""
    from expectations.ingest_pool import fork_server_cpu_seconds  # ingest's workers: not our children

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + fork_server_cpu_seconds()


class StepCpu(logging.Handler):
    """CPU seconds, peak RSS and load average of this process at each step the weekly flow finishes.

    The flow reports each step on the ``upstream.steps`` logger as it ends (``pipelines.flows.lap``); reading
    the process's CPU clock right then splits the week's CPU by step, which on a shared 2-core machine says
    more than wall time (a step's wall time grows with the load average, its CPU much less).
    """

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.marks: list[tuple[str, float, float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        step = "start" if getattr(record, "starting", False) else getattr(record, "step", None)
        if step:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
            self.marks.append((step, _cpu_seconds(), peak, os.getloadavg()[0]))

    def report(self) -> str:
        """``step CPU s (peak GiB, load)`` for each step since the last report."""
        parts = []
        for (_, before, _, _), (step, after, peak, load) in zip(self.marks, self.marks[1:], strict=False):
            parts.append(f"{step} {after - before:.1f} (peak {peak:.1f} GiB, load {load:.1f})")
        self.marks.clear()
        return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=280_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--train-sample", type=int, default=None)
    parser.add_argument("--dask-address", default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="keep data here (default: a temp dir)")
    parser.add_argument("--score-only", action="store_true",
                        help="only the scoring week, with the champion an earlier run left in WORKDIR/home")
    args = parser.parse_args()

    no_phone_home()
    os.environ.setdefault("UPSTREAM_PSEUDO_KEY", "bench-key-not-secret")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="upstream-bench-"))
    raw = workdir / "raw"
    home = workdir / "home"
    if not (raw / "residents.parquet").exists() and not (raw / "residents.csv").exists():
        started = time.perf_counter()
        from synthetic import default_workers

        _generator()(raw, residents=args.residents, seed=args.seed, workers=default_workers())
        print(f"generate {args.residents:,} residents: {time.perf_counter() - started:.1f} s (not part of the goal)")

    from pipelines.prefect_server import launch_temporary_api, prepare_environment, watched_prefect_api

    prepare_environment()
    # As `upstream run`: the temporary API starts on the other core while this process imports the flows, GX
    # included (``pipelines.weeks`` imports ingest: launched after it, the server started 3 s later).
    launch_temporary_api(server_log=home / "logs" / "prefect-server.log")
    from pipelines.weeks import delivery_extract_date

    extract = delivery_extract_date(raw)
    assert extract is not None, "the generator writes _delivery.json with extract_date"
    from pipelines.cli_run import abort_run
    from pipelines.flows import weekly
    from upstream.settings import Settings

    bench_settings = Settings(home=home)
    step_cpu = StepCpu()
    steps_logger = logging.getLogger("upstream.steps")
    steps_logger.addHandler(step_cpu)
    steps_logger.setLevel(logging.INFO)
    # Like `upstream run`: PREFECT_API_URL if set, else a temporary API for this process; if the API dies
    # mid-run, stop with exit code 2 and one line, never hang (the watchdog is disarmed before we stop it).
    on_lost = abort_run(home, bench_settings.db_url, "bench_weekly")
    with watched_prefect_api(on_lost, grace=30, server_log=home / "logs" / "prefect-server.log"):
        weeks = [
            ("week 1 (train)", extract - timedelta(days=7), "always"),
            ("week 2 (score only)", extract, "never"),
        ]
        for label, index_date, train in weeks[1:] if args.score_only else weeks:
            started = time.perf_counter()
            cpu_started = _cpu_seconds()
            result = weekly(
                raw_dir=str(raw),
                index_date=index_date,
                train=train,
                home=str(home),
                dask_address=args.dask_address,
                train_sample=args.train_sample,
            )
            total = time.perf_counter() - started
            cpu = _cpu_seconds() - cpu_started
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in result["timings"].items())
            print(
                f"{label}: {result['n_scored']:,} scored in {total:.1f} s "
                f"(ratio to the {GOAL_SECONDS:.0f} s goal: {total / GOAL_SECONDS:.2f}); {steps}; "
                f"CPU {cpu:.1f} s; load average {os.getloadavg()[0]:.1f}"
            )
            print(f"{label} CPU s by step: {step_cpu.report()}")
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"peak RSS of this process: {peak_gib:.1f} GiB; data in {workdir}")
    print(f"process: {time.perf_counter() - PROCESS_STARTED:.1f} s wall from the first import of this script to "
          f"here (imports and the Prefect server's start included), CPU {_cpu_seconds():.1f} s")


if __name__ == "__main__":
    main()
