"""Probe: score one locality's feature partition twice in a fresh process (CPU and wall of each call), as a
Dask worker does. Separates the first-call cost (imports, model load, TreeSHAP tables) from the steady cost.

    flock /tmp/upstream-heavy.lock .venv/bin/python bench/probe_score_locality.py HOME WEEK North.parquet
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ...   # the environment Dask gives workers
"""

import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("UPSTREAM_PSEUDO_KEY", "bench-key-not-secret")
from pipelines.champion import score_partition
from upstream.settings import Settings


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


settings = Settings(home=Path(sys.argv[1]))
features = Path(sys.argv[1]) / "weeks" / sys.argv[2] / "features" / sys.argv[3]
for _ in range(2):
    c, w = cpu(), time.perf_counter()
    out = score_partition(features, settings)
    print(sys.argv[3], "OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS"), "rows", out.height,
          "cpu", round(cpu() - c, 1), "wall", round(time.perf_counter() - w, 1), flush=True)
