"""Benchmark: storing one week's scores (``pipelines.score_history.write_scores``) alone: wall time and RSS growth.

    .venv/bin/python bench/bench_store.py 300000
    git show 501c93c:pipelines/publish.py > /tmp/publish_old.py
    .venv/bin/python bench/bench_store.py 300000 --publish-module /tmp/publish_old.py   # the code before issue 17

Run each in a fresh process (``ru_maxrss`` is a process-wide peak). The DB is a temp SQLite file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("residents", type=int)
    parser.add_argument("--publish-module", type=Path, default=None, help="another version of pipelines/score_history.py (pipelines/publish.py before issue 14)")
    args = parser.parse_args()
    import polars as pl

    if args.publish_module:
        spec = importlib.util.spec_from_file_location("publish_under_test", args.publish_module)
        publish = importlib.util.module_from_spec(spec)
        sys.modules["publish_under_test"] = publish
        spec.loader.exec_module(publish)
    else:
        import pipelines.score_history as publish
    from upstream.store import get_engine

    n = args.residents
    reasons = json.dumps(
        [
            {"feature": f"feature_{i}", "value": 3.0, "text": f"{i + 2} emergency admissions in the last 12 months",
             "contribution": 0.123456}
            for i in range(3)
        ]
    )
    frame = pl.DataFrame(
        {
            "person_id": [f"{i:032x}" for i in range(n)],
            "locality": ["Dartford, Gravesham and Swanley"] * n,
            "score": [i / n for i in range(n)],
            "band": ["high"] * n,
            "in_long_term_care": [False] * n,
            "reasons": [reasons] * n,
        }
    )
    workdir = Path(tempfile.mkdtemp(prefix="upstream-bench-store-"))
    try:
        engine = get_engine(f"sqlite:///{workdir / 'upstream.db'}")
        publish.start_score_run(engine, run_id="r", week="2026-W47", index_date=date(2026, 11, 23), target="crisis",
                                model_name="m", model_version="1")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        publish.write_scores(engine, "r", frame)
        took = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{n:,} residents: write {took:.1f} s; peak RSS {before:.0f} -> {after:.0f} MiB (+{after - before:.0f} MiB)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
