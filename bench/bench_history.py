"""How big and how fast is a year of weekly score history as one parquet file per week?

Usage: .venv/bin/python bench/bench_history.py --residents 1900000 --weeks 52 --dir /work/data-i15/history

Simulates what the history store would hold (issue 15, item 4): per week and resident the pseudonymised
id, locality, score, band and percentile (reasons stay with the current week in the database). Each week
is written sorted by person_id, so parquet's per-row-group min/max statistics let a reader skip every
row group but one when it looks up a single resident. Prints bytes on disk, weekly write time and the
p50/p99 time to read one resident's whole year (polars scan with a predicate, all weeks) from a fresh
scan each time, as an API request would. This measures the storage choice; it is not the API.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

LOCALITIES = ["North", "South", "East", "West", "Central", "Coast", "Weald", "Valley"]
BANDS = ["very high", "high", "moderate", "low"]


def week_frame(ids: pl.Series, week: int, rng: np.random.Generator) -> pl.DataFrame:
    n = ids.len()
    score = np.clip(rng.beta(1.2, 9.0, n) + rng.normal(0, 0.01, n), 0, 1).astype(np.float32)
    return pl.DataFrame({
        "person_id": ids,
        "week": pl.Series([f"2026-W{week:02d}"] * n, dtype=pl.Categorical),
        "locality": pl.Series(np.array(LOCALITIES)[rng.integers(0, len(LOCALITIES), n)], dtype=pl.Categorical),
        "score": score,
        "band": pl.Series(np.array(BANDS)[rng.integers(0, 4, n)], dtype=pl.Categorical),
        "percentile": rng.random(n).astype(np.float32),
    })


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=1_900_000)
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--row-group", type=int, default=50_000)
    args = parser.parse_args()

    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    rng = np.random.default_rng(1)
    ids = pl.Series("person_id", [f"{v:016x}" for v in rng.integers(0, 2**63, args.residents)]).unique().sort()
    writes = []
    for week in range(1, args.weeks + 1):
        frame = week_frame(ids, week, rng)
        started = time.perf_counter()
        frame.sort("person_id").write_parquet(
            args.dir / f"week={week:02d}.parquet", compression="zstd", row_group_size=args.row_group, statistics=True
        )
        writes.append(time.perf_counter() - started)
    size = sum(p.stat().st_size for p in args.dir.glob("*.parquet"))
    people = ids.sample(args.lookups, seed=2).to_list()
    reads = []
    for person in people:
        started = time.perf_counter()
        history = pl.scan_parquet(args.dir / "*.parquet").filter(pl.col("person_id") == person).collect()
        reads.append(time.perf_counter() - started)
        assert history.height == args.weeks, (person, history.height)
    reads_ms = np.array(reads) * 1000
    print(f"{ids.len():,} residents x {args.weeks} weeks = {ids.len() * args.weeks:,} rows")
    print(f"bytes on disk: {size:,} ({size / 2**30:.2f} GiB; {size / (ids.len() * args.weeks):.1f} B/row)")
    print(f"weekly write: median {np.median(writes):.2f} s, max {max(writes):.2f} s")
    print(f"one resident's year (all weeks), {args.lookups} lookups: p50 {np.percentile(reads_ms, 50):.1f} ms, "
          f"p99 {np.percentile(reads_ms, 99):.1f} ms")
    print(f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
