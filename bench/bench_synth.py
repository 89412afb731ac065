"""Benchmark the synthetic generator: wall time and peak memory per population size.

Each size runs in a fresh child process (so peak RSS is that run's own, measured with
resource.getrusage in the child). Prints rows written, seconds, residents per second, peak RSS, and the
time per resident relative to the first (smallest) size, which shows whether cost scales linearly.

    .venv/bin/python bench/bench_synth.py 20000 280000
    .venv/bin/python bench/bench_synth.py 1900000 --workers 2 --defect-rate 0.01 --keep /work/data/d1900k
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
from pathlib import Path
from synthetic.generate import generate_delivery
out, n, seed, fmt, workers, defects = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), float(sys.argv[6])
t0 = time.perf_counter()
s = generate_delivery(out, residents=n, seed=seed, defect_rate=defects, fmt=fmt, workers=workers)
elapsed = time.perf_counter() - t0
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
workers_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"residents": n, "seconds": elapsed, "peak_rss_mib": peak_mib, "worker_peak_rss_mib": workers_mib,
                  "rows": s.rows,
                  "oracle_auroc_crisis": {str(k): v["crisis"] for k, v in s.oracle_auroc.items()},
                  "prevalence": {str(k): v for k, v in s.prevalence.items()}}))
"""


def run_one(residents: int, seed: int, fmt: str, out: Path, workers: int, defect_rate: float) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(out), str(residents), str(seed), fmt, str(workers), str(defect_rate)],
                          check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[20_000, 280_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--format", default="parquet", choices=("parquet", "csv"))
    parser.add_argument("--workers", type=int, default=1, help="simulation processes (peak RSS is per process)")
    parser.add_argument("--defect-rate", type=float, default=0.0)
    parser.add_argument("--keep", type=Path, default=None, help="write the last delivery here and keep it")
    args = parser.parse_args()
    base_per_resident = None
    print(f"workers={args.workers}  load average at start: {os.getloadavg()[0]:.1f} (shared machine)")
    print(f"{'residents':>10} {'seconds':>9} {'res/s':>9} {'peak RSS MiB':>13} {'worker MiB':>11} {'rows':>12} "
          f"{'s/resident vs first':>20}")
    for i, n in enumerate(args.sizes):
        keep = args.keep if (args.keep and i == len(args.sizes) - 1) else None
        tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))
        out = keep or tmp / "d"
        try:
            r = run_one(n, args.seed, args.format, out, args.workers, args.defect_rate)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        per = r["seconds"] / n
        base_per_resident = base_per_resident or per
        rows = sum(r["rows"].values())
        print(f"{n:>10,} {r['seconds']:>9.1f} {n / r['seconds']:>9,.0f} {r['peak_rss_mib']:>13,.0f} "
              f"{r['worker_peak_rss_mib']:>11,.0f} {rows:>12,} "
              f"{per / base_per_resident:>20.2f}")
        print(f"           rows: {r['rows']}")
        print(f"           prevalence: {r['prevalence']}  oracle AUROC (crisis): {r['oracle_auroc_crisis']}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
