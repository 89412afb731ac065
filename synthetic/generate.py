"""Write one synthetic delivery: six contract files, ``_delivery.json`` and ``_truth/``.

Streams chunk by chunk (whole households, a fixed number of residents each) into one ParquetWriter (or CSV
file) per source, so memory is bounded by a chunk plus the population arrays, whatever the size.
Each chunk has its own random stream from (seed, chunk): same arguments -> same bytes.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Literal

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from expectations.contract import ADDRESSES, SOURCES
from synthetic import DEFAULT_YEARS
from synthetic import codes as C
from synthetic.chunk import TRUTH_COLUMNS, ChunkResult, simulate_chunk
from synthetic.defects import inject
from synthetic.population import Population, build_population, grid_start_day, to_days
from synthetic.programme import ACTIONS_FILE, TRUTH_FILE, Programme, truth_summary
from synthetic.worlds import WORLDS
from upstream.errors import UpstreamError

GENERATOR_VERSION = "1.8.0"
DEFAULT_END_DATE = date(2026, 11, 22)
CHUNK_RESIDENTS = 25_000
MAX_DEFECT_RATE = 0.1
OUTCOMES = ("emergency_admission", "care_escalation", "crisis")


@dataclass
class GenerationSummary:
    out_dir: Path
    residents: int
    rows: dict[str, int]  # rows written per source, defects included
    defects: int
    defects_by_kind: dict[str, int]
    defects_path: Path
    truth_paths: dict[date, Path]
    prevalence: dict[date, dict[str, float]]  # among eligible people
    oracle_auroc: dict[date, dict[str, float]]
    elapsed_s: float
    extra: dict[str, float] = field(default_factory=dict)


def monday_on_or_before(d: date) -> date:
    return d - timedelta(days=d.weekday())


def default_truth_dates(end_date: date) -> list[date]:
    return [monday_on_or_before(end_date - timedelta(days=730)), monday_on_or_before(end_date - timedelta(days=365))]


def auroc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney AUROC with average ranks for ties."""
    pos = int(label.sum())
    neg = len(label) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = pl.Series(score).rank("average").to_numpy()
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


class _Writer:
    """One output file per source; parquet through a single ParquetWriter, CSV appended chunk by chunk."""

    def __init__(self, path: Path, schema: dict[str, pl.DataType], fmt: str) -> None:
        self.path, self.fmt, self.rows = path, fmt, 0
        self._pq: pq.ParquetWriter | None = None
        self._fh: IO[bytes] | None = None
        empty = pl.DataFrame(schema=schema)
        self._schema = empty.to_arrow().schema
        if fmt == "csv":
            self._fh = path.open("wb")
            empty.write_csv(self._fh)
        else:
            self._pq = pq.ParquetWriter(path, self._schema, compression="zstd")

    def write(self, df: pl.DataFrame) -> None:
        self.rows += len(df)
        if self._fh is not None:
            df.write_csv(self._fh, include_header=False)
        elif self._pq is not None and len(df):
            self._pq.write_table(df.to_arrow().cast(self._schema))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        if self._pq is not None:
            self._pq.close()


def _chunks(household: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Split people into runs of about ``size`` that never cut a household."""
    bounds = [0]
    n = len(household)
    while bounds[-1] < n:
        hi = min(bounds[-1] + size, n)
        while hi < n and household[hi] == household[hi - 1]:
            hi += 1
        bounds.append(hi)
    return list(itertools.pairwise(bounds))


_POP: Population | None = None


def _init_worker(pop: Population | None) -> None:
    global _POP
    _POP = pop


def _simulate_job(job: tuple) -> ChunkResult:
    chunk, lo, hi, seed, world, grid_start, end_day, t_dates, programme = job
    assert _POP is not None
    return simulate_chunk(_POP, lo, hi, chunk, seed, WORLDS[world], grid_start, end_day, t_dates,
                          programme=programme)


def generate_delivery(out_dir: Path, residents: int, seed: int, years: int = DEFAULT_YEARS, defect_rate: float = 0.0,
                      fmt: Literal["parquet", "csv"] = "parquet", end_date: date = DEFAULT_END_DATE,
                      world: str = "default", truth_dates: Sequence[date] | None = None, *,
                      workers: int = 1, programme_effect: float | None = None,
                      addresses: bool = True) -> GenerationSummary:
    """Generate a synthetic delivery into ``out_dir``; see the module docstring.

    ``workers`` > 1 simulates chunks in that many processes; output is identical (chunks are independent
    and written in order). ``programme_effect`` (0 <= E < 1) simulates a past programme with that true
    effect (synthetic/programme.py): ``programme_actions.csv`` and ``_truth/programme.json``.
    People move house, into care homes and after a death either way (synthetic/addresses.py; the residents
    file holds the extract-time address); ``addresses`` writes the optional address history with its
    ``_truth/moves.parquet`` (False: a delivery from a council that has no address history).
    """
    started = time.perf_counter()
    if residents < 1:
        raise UpstreamError("residents must be at least 1")
    if years < 1:
        raise UpstreamError("years must be at least 1")
    if not 0 <= defect_rate <= MAX_DEFECT_RATE:
        raise UpstreamError(f"defect rate must be between 0 and {MAX_DEFECT_RATE}")
    if fmt not in ("parquet", "csv"):
        raise UpstreamError(f"unknown format {fmt!r} (parquet or csv)")
    if workers < 1:
        raise UpstreamError("workers must be at least 1")
    if world not in WORLDS:
        raise UpstreamError(f"unknown world {world!r} (choose from {', '.join(WORLDS)})")
    if programme_effect is not None and not 0 <= programme_effect < 1:
        raise UpstreamError(f"--programme-effect must be at least 0 and below 1, got {programme_effect}")
    C.check_icd_lists()
    out_dir = Path(out_dir)
    window_start = to_days(end_date) - years * 365
    grid_start = grid_start_day(window_start)
    def fits(t: date) -> bool:
        return to_days(t) >= grid_start and t + timedelta(days=365) <= end_date

    if truth_dates is None:  # the defaults that fit (a 1-year delivery has none)
        t_dates = [t for t in default_truth_dates(end_date) if fits(t)]
    else:
        t_dates = sorted({monday_on_or_before(t) for t in truth_dates})
        for t in t_dates:
            if not fits(t):
                raise UpstreamError(f"truth date {t} needs a full year of data after it inside the delivery window")

    programme = None
    if programme_effect is not None:
        programme = Programme(effect=programme_effect, start=Programme.default_start(end_date))
        if to_days(programme.start) - 365 < window_start:
            raise UpstreamError("--programme-effect needs at least 2 years of history (--years 2 or more)")
    pop = build_population(residents, seed, end_date, window_start, WORLDS[world])
    out_dir.mkdir(parents=True, exist_ok=True)
    truth_dir = out_dir / "_truth"
    truth_dir.mkdir(exist_ok=True)
    for old in [*truth_dir.glob("risk_*.parquet"), truth_dir / TRUTH_FILE, out_dir / ACTIONS_FILE]:
        old.unlink(missing_ok=True)
    ext = "csv" if fmt == "csv" else "parquet"
    for name in (*SOURCES, ADDRESSES.name):
        for stale in (out_dir / f"{name}.csv", out_dir / f"{name}.parquet", truth_dir / "moves.parquet"):
            if stale.exists():
                stale.unlink()
    written = {**SOURCES, **({ADDRESSES.name: ADDRESSES} if addresses else {})}
    writers = {name: _Writer(out_dir / f"{name}.{ext}", src.schema, fmt) for name, src in written.items()}
    move_parts: list[pl.DataFrame] = []

    n_spare = len(pop.spare_nhs)
    unknown_pool = pop.spare_nhs[n_spare - 2000:]
    fake_pool = pop.spare_nhs[: n_spare - 2000]
    truth_parts: dict[date, list[pl.DataFrame]] = {t: [] for t in t_dates}
    defect_parts: list[pl.DataFrame] = []
    action_parts: list[pl.DataFrame] = []
    programme_sums: list[tuple[float, float, int]] = []
    jobs = [(chunk, lo, hi, seed, world, grid_start, to_days(end_date), t_dates, programme)
            for chunk, (lo, hi) in enumerate(_chunks(pop.household, CHUNK_RESIDENTS))]
    pool = None
    if workers > 1 and len(jobs) > 1:
        # spawn, not fork: the parent may already have started polars' thread pool
        pool = mp.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(pop,))
        results: Iterator[ChunkResult] = pool.imap(_simulate_job, jobs, chunksize=1)
    else:
        _init_worker(pop)
        results = map(_simulate_job, jobs)
    try:
        for (chunk, lo, hi, *_), result in zip(jobs, results, strict=True):
            drng = np.random.default_rng([seed, 3, chunk])
            start = int(np.ceil(0.2 * lo)) + chunk
            spare = list(fake_pool[start: start + int(np.ceil(0.2 * (hi - lo))) + 1][::-1])
            for name, df in result.tables.items():
                if name not in writers:
                    continue
                out, records = inject(name, df, defect_rate, drng, end_date, spare, unknown_pool,
                                      result.living_nhs)
                if records:
                    offset = writers[name].rows
                    defect_parts.append(pl.DataFrame(
                        {"source": [name] * len(records), "row_index": [offset + r[0] for r in records],
                         "defect": [r[1] for r in records], "column": [r[2] for r in records]},
                        schema={"source": pl.String, "row_index": pl.Int64, "defect": pl.String,
                                "column": pl.String}))
                writers[name].write(out)
            for t, frame in result.truth.items():
                truth_parts[t].append(frame)
            if result.moves is not None and addresses:
                move_parts.append(result.moves)
            if result.programme_actions is not None:
                action_parts.append(result.programme_actions)
                programme_sums.append(result.programme_truth)
    finally:
        for wr in writers.values():
            wr.close()
        if pool is not None:
            pool.terminate()
            pool.join()
        _init_worker(None)

    defects = (pl.concat(defect_parts) if defect_parts else
               pl.DataFrame(schema={"source": pl.String, "row_index": pl.Int64, "defect": pl.String,
                                    "column": pl.String}))
    defects_path = truth_dir / "defects.parquet"
    if addresses:
        pl.concat(move_parts).write_parquet(truth_dir / "moves.parquet")
    defects.write_parquet(defects_path)
    truth_paths: dict[date, Path] = {}
    prevalence: dict[date, dict[str, float]] = {}
    oracle: dict[date, dict[str, float]] = {}
    for t, parts in truth_parts.items():
        frame = pl.concat(parts).select(TRUTH_COLUMNS)
        path = truth_dir / f"risk_{t.isoformat()}.parquet"
        frame.write_parquet(path)
        truth_paths[t] = path
        eligible = frame.filter(pl.col("eligible"))
        prevalence[t] = {o: float(eligible[f"y_{o}"].mean() or 0.0) for o in OUTCOMES}
        oracle[t] = {o: auroc(eligible[f"p_{o}"].to_numpy(), eligible[f"y_{o}"].to_numpy()) for o in OUTCOMES}
    extra: dict[str, float] = {}
    if programme is not None:
        pl.concat(action_parts).write_csv(out_dir / ACTIONS_FILE)
        truth = truth_summary(programme, programme_sums)
        (truth_dir / TRUTH_FILE).write_text(json.dumps(truth, indent=2) + "\n")
        crisis = truth["crisis_12m"]
        extra = {"programme_n_treated": float(crisis["n_treated"]),
                 "programme_true_rd": float("nan") if crisis["risk_difference"] is None else crisis["risk_difference"],
                 "programme_true_rr": float("nan") if crisis["risk_ratio"] is None else crisis["risk_ratio"]}
    meta = {"extract_date": end_date.isoformat(), "seed": seed, "residents": residents, "years": years,
            "world": world, "generator_version": GENERATOR_VERSION, "defect_rate": defect_rate, "format": fmt,
            "truth_dates": [t.isoformat() for t in t_dates]}
    (out_dir / "_delivery.json").write_text(json.dumps(meta, indent=2) + "\n")
    return GenerationSummary(
        out_dir=out_dir, residents=residents, rows={k: wr.rows for k, wr in writers.items()},
        defects=len(defects), defects_by_kind=dict(sorted(defects.group_by("defect").len().iter_rows())),
        defects_path=defects_path, truth_paths=truth_paths, prevalence=prevalence, oracle_auroc=oracle,
        elapsed_s=time.perf_counter() - started, extra=extra,
    )
