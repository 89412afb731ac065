"""Ingest validation speed: the ways of running every row-level check in Great Expectations.

GX has no polars backend, so every option converts to pandas. Options measured in one process:

- ``native``            plain ``to_pandas`` of the typed source + GX's own expectations per source
                        (baseline; Mod 11 / Verhoeff / duplicates / residents membership still need
                        precomputed booleans because GX cannot express them);
- ``native_chunked``    the same, validated in row chunks of ``--chunk-rows``;
- ``precomputed``       polars evaluates each check into a boolean column; GX judges each column with
                        ``expect_column_values_to_be_in_set([True])`` (row positions still from GX);
- ``precomputed_chunked`` the same in row chunks.

Usage: ``.venv/bin/python bench/bench_ingest.py --raw /tmp/upstream_280k [--options precomputed,native]``
Prints per-source and total seconds (read + checks + GX), the ratio to ``native``, then one full
``ingest_delivery`` (chosen option, writing clean/quarantine/summary/Data Docs) end to end, with its CPU
seconds (all threads) beside the wall time. ``--full-only``: just that end-to-end run, in the default mode
(what the weekly flow's ingest step does), e.g. at county scale:
``flock /tmp/upstream-county.lock .venv/bin/python bench/bench_ingest.py --raw /work/data-s3/raw1900 --full-only``
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("UPSTREAM_PSEUDO_KEY", "bench-key-not-secret")

OPTIONS = {
    "native": ("native", None),
    "native_chunked": ("native", None),
    "precomputed": ("precomputed", None),
    "precomputed_chunked": ("precomputed", None),
}


def _validate_all(raw: Path, home: Path, mode: str, chunk_rows: int | None) -> tuple[float, dict[str, float], dict]:
    """Read + type + every row-level check in GX, for all sources; no output written."""
    from expectations.contract import SOURCES
    from expectations.ingest import SOURCE_ORDER, GxRunner, resolve_as_of, validate_source
    from expectations.read import read_source
    from upstream.settings import Settings

    settings = Settings(home=home)
    as_of = resolve_as_of(raw, None)
    started = time.perf_counter()
    runner = GxRunner(home / "gx")
    per_source: dict[str, float] = {}
    quarantined: dict[str, int] = {}
    valid_people = None
    for name in SOURCE_ORDER:
        t0 = time.perf_counter()
        frame = read_source(raw, SOURCES[name])
        result = validate_source(frame, runner, as_of=as_of, settings=settings, valid_people=valid_people,
                                 mode=mode, chunk_rows=chunk_rows)
        if name == "residents":
            valid_people = (result.canonical.with_row_index("row_index")
                            .join(result.bad_rows, on="row_index", how="anti")["nhs_number"])
        per_source[name] = time.perf_counter() - t0
        quarantined[name] = (frame.raw.height, result.bad_rows.height)
        del frame, result
    return time.perf_counter() - started, per_source, quarantined


def _cpu_seconds() -> float:
    """User + system CPU of this process (every thread: polars' pool included) and of the ingest workers
    (children of the pool's fork server, which ``RUSAGE_CHILDREN`` would never count)."""
    from expectations.ingest_pool import fork_server_cpu_seconds

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + fork_server_cpu_seconds()


def _full_only(raw: Path) -> None:
    """One ``ingest_delivery`` as the weekly flow runs it (default settings, Data Docs built): wall, CPU, peak."""
    from expectations.ingest import ingest_delivery
    from upstream.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    try:
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        summary = ingest_delivery(raw, work / "out", Settings(home=work / "home"))
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
        rows = sum(entry["rows_in"] for entry in summary.values())
        print(f"ingest_delivery: {wall:.1f} s wall, {cpu:.1f} s CPU, {rows:,} rows in "
              f"(imports, GX included, before the clock: {cpu0:.1f} s CPU)")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024:.2f} GiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--options", default="native,native_chunked,precomputed,precomputed_chunked")
    parser.add_argument("--chunk-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-full", action="store_true", help="skip the end-to-end ingest_delivery run")
    parser.add_argument("--full-only", action="store_true", help="only the end-to-end run, default settings")
    args = parser.parse_args()
    if args.full_only:
        _full_only(args.raw)
        return

    work = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    try:
        totals: dict[str, float] = {}
        counts: dict[str, dict] = {}
        for option in args.options.split(","):
            mode = OPTIONS[option][0]
            chunk = args.chunk_rows if option.endswith("chunked") else None
            total, per_source, counts[option] = _validate_all(args.raw, work / option, mode, chunk)
            totals[option] = total
            detail = ", ".join(f"{k} {v:.1f}s" for k, v in per_source.items())
            print(f"{option:22s} {total:7.1f} s   ({detail})", flush=True)
        rows = {k: v[0] for k, v in next(iter(counts.values())).items()}
        print("rows in:", ", ".join(f"{k} {v:,}" for k, v in rows.items()))
        print("quarantined:", ", ".join(f"{k} {v[1]:,}" for k, v in next(iter(counts.values())).items()))
        if len({tuple(sorted(c.items())) for c in counts.values()}) != 1:
            print("WARNING: options disagree on quarantined counts:", counts)
        if "native" in totals:
            for option, total in totals.items():
                print(f"ratio {option} / native = {total / totals['native']:.2f}")
        best = min(totals, key=totals.get)
        print(f"fastest: {best}")
        if not args.skip_full:
            from expectations.ingest import ingest_delivery
            from upstream.settings import Settings

            mode = OPTIONS[best][0]
            chunk = args.chunk_rows if best.endswith("chunked") else None
            t0 = time.perf_counter()
            ingest_delivery(args.raw, work / "out", Settings(home=work / "home_full"), mode=mode, chunk_rows=chunk)
            print(f"full ingest_delivery ({best}, with clean/quarantine/summary/Data Docs): "
                  f"{time.perf_counter() - t0:.1f} s")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
        print(f"peak RSS {peak:.1f} GiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
