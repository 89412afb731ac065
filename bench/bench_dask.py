"""Benchmark: the same scoring week run locally and on a Dask LocalCluster, step by step.

Says what fanning the whole weekly flow out costs in task overhead on one machine (ingest per source
chunk, features, scoring and lists per locality, outcome follow-up), and how much memory a worker needs:
the figures docs/SCALING.md builds on. A first week trains the champion locally (not compared).

    flock /tmp/upstream-heavy.lock .venv/bin/python bench/bench_dask.py --raw /work/data-i10/d280k4 \
        --workdir /work/data-i15d/b280 --workers 2 --train-sample 100000

Reports, per run: wall time per step, CPU of the flow process, CPU and peak RSS of each worker process,
and the load average. Data and homes stay in WORKDIR (never in the repo).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from datetime import timedelta
from pathlib import Path

from upstream.cli import no_phone_home


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _worker_usage() -> dict[str, float]:
    """Runs on each worker: its process's CPU seconds and peak RSS (GiB). The peak is VmHWM from /proc, not
    ``ru_maxrss``: Linux carries ``ru_maxrss`` over from the parent at fork/exec, so a worker spawned by a
    2.3 GiB process reports 2.3 GiB whatever it uses itself."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_kib = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("VmHWM:"))
    return {"cpu": usage.ru_utime + usage.ru_stime, "peak_gib": peak_kib / 1024**2}


def _run(label: str, weekly, raw: Path, home: Path, index_date, train: str, sample, address=None) -> dict:
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    result = weekly(raw_dir=str(raw), index_date=index_date, train=train, home=str(home),
                    dask_address=address, train_sample=sample)
    row = {
        "run": label,
        "wall": round(time.perf_counter() - started, 1),
        "flow_cpu": round(_cpu_seconds() - cpu_started, 1),
        "steps": result["timings"],
        "n_scored": result["n_scored"],
        "load": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True, help="an existing delivery (read only)")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--train-sample", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="local/cluster pairs of the scoring week")
    args = parser.parse_args()
    no_phone_home()
    os.environ.setdefault("UPSTREAM_PSEUDO_KEY", "bench-key-not-secret")

    from distributed import Client, LocalCluster

    from pipelines.cli_run import abort_run
    from pipelines.prefect_server import prepare_environment, watched_prefect_api
    from pipelines.weeks import delivery_extract_date
    from upstream.settings import Settings

    prepare_environment()
    from pipelines.flows import weekly
    from upstream.store import get_engine

    home = args.workdir / "home"
    extract = delivery_extract_date(args.raw)
    assert extract is not None
    on_lost = abort_run(home, Settings(home=home).db_url, "bench_dask")
    rows = []
    with watched_prefect_api(on_lost, grace=30, server_log=home / "logs" / "prefect-server.log"):
        from models.registry import champion_ref

        if champion_ref(Settings(home=home)) is None:
            _run("train week (local, not compared)", weekly, args.raw, home, extract - timedelta(days=7), "always",
                 args.train_sample)
        get_engine(Settings(home=home).db_url).dispose()
        for _ in range(args.repeat):
            rows.append(_run("local", weekly, args.raw, home, extract, "never", None))
            with (
                LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                             dashboard_address=":0", memory_limit=0) as cluster,
                Client(cluster) as client,
            ):
                before = client.run(_worker_usage)
                row = _run(f"cluster ({args.workers} worker processes)", weekly, args.raw, home, extract, "never",
                           None, cluster.scheduler_address)
                after = client.run(_worker_usage)
                row["workers"] = {
                    address: {"cpu": round(after[address]["cpu"] - before[address]["cpu"], 1),
                              "peak_gib": round(after[address]["peak_gib"], 2)}
                    for address in after
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(f"flow process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GiB")
    (args.workdir / "bench_dask.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
