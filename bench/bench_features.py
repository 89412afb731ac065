"""Feature build speed and peak memory at delivery scale.

Usage:
  .venv/bin/python bench/bench_features.py --residents 280000 [--clean /tmp/upstream_280k_clean]
      [--index-date YYYY-MM-DD] [--make-local]

If ``--clean`` exists it is used as is (ingest's OUT or OUT/clean, e.g. from ``upstream synth`` +
``upstream ingest``); if not and ``--raw`` is given, the real ingest writes it. Otherwise, with ``--make-local``, a clean-format delivery is written there by the
local maker below (numpy; codes drawn only from the shipped code lists; volumes per person set to
roughly those of a 3-year delivery). The build then runs in a fresh child process so its peak RSS
(``ru_maxrss``) is the build's alone, and the script prints rows, columns, seconds and peak GiB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: events per resident over the whole delivery (3 years), for the local maker
GP_EVENTS_PER_PERSON = 30
SPELLS_PER_PERSON = 0.4
AE_PER_PERSON = 0.9
SOCIAL_CARE_SHARE = 0.06
SOCIAL_CARE_EVENTS_PER_CLIENT = 5


def make_local_clean(out: Path, n: int, end: date, seed: int = 1) -> None:
    """Write a clean-format delivery (ingest conventions) of ``n`` residents over the 3 years to ``end``."""
    import numpy as np
    import polars as pl

    from expectations.contract import (
        ADMISSION_METHODS,
        CLD_EVENT_TYPES,
        CLD_SERVICE_COMPONENTS,
        CLD_SERVICE_TYPES,
        CLD_SUPPORT_REASONS,
        ETHNIC_CATEGORIES,
    )
    from features.codelists import ALL_SNOMED_LISTS, FALLS_ICD10, hfrs_weights, imd_deciles

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    start = end - timedelta(days=3 * 365)
    span = (end - start).days
    ids = np.array([f"{i:016x}" for i in range(n)])
    age_days = rng.integers(0, 100 * 365, n)
    dob = np.datetime64(end) - age_days.astype("timedelta64[D]")
    households = rng.integers(0, max(1, int(n / 2.3)), n)
    lsoas = np.array(sorted(imd_deciles()))[rng.integers(0, 1000, n)]
    dies = rng.random(n) < 0.03 * (age_days / 36500) ** 2 * 3
    death = np.where(dies, np.datetime64(start) + rng.integers(0, span, n).astype("timedelta64[D]"),
                     np.datetime64("NaT"))
    residents = pl.DataFrame({
        "person_id": ids,
        "date_of_birth": dob,
        "sex": rng.choice(["1", "2", "9"], n, p=[0.49, 0.5, 0.01]),
        "ethnic_category": rng.choice(list(ETHNIC_CATEGORIES), n),
        "lsoa11": lsoas,
        "uprn": np.char.add("U", households.astype(str)),
        "gp_practice": rng.choice(["G82001", "G82002", "G82003"], n),
        "locality": rng.choice(["North", "South", "East", "West"], n),
        "registration_start": np.datetime64("1990-01-01") + rng.integers(0, 35 * 365, n).astype("timedelta64[D]"),
        "date_of_death": death,
    }).with_columns(pl.col(c).cast(pl.Date) for c in ("date_of_birth", "registration_start", "date_of_death"))
    residents.write_parquet(out / "residents.parquet")
    residents.filter(pl.col("date_of_death").is_not_null()).select(
        "person_id", "date_of_death", pl.lit("I219").alias("underlying_cause_icd10")
    ).write_parquet(out / "deaths.parquet")

    older = np.clip(age_days / 36500, 0.05, None)
    weights = older / older.sum()

    def people(k: int) -> np.ndarray:
        return ids[rng.choice(n, k, p=weights)]

    def dates(k: int) -> np.ndarray:
        return np.datetime64(start) + rng.integers(0, span, k).astype("timedelta64[D]")

    snomed = np.array(sorted({c for cl in ALL_SNOMED_LISTS for c in cl.codes()}))
    k = n * GP_EVENTS_PER_PERSON
    pl.DataFrame({
        "person_id": people(k), "event_date": dates(k), "snomed_code": snomed[rng.integers(0, len(snomed), k)],
        "value": np.full(k, None),
    }, schema_overrides={"value": pl.Float64}).with_columns(pl.col("event_date").cast(pl.Date)).write_parquet(
        out / "gp_events.parquet")

    icd = np.array(sorted(hfrs_weights()) + sorted(FALLS_ICD10.codes()))
    k = int(n * SPELLS_PER_PERSON)
    admit = dates(k)
    secondary = [",".join(icd[rng.integers(0, len(icd), m)]) for m in rng.integers(0, 6, k)]
    pl.DataFrame({
        "person_id": people(k), "spell_id": np.char.add("S", np.arange(k).astype(str)),
        "admission_date": admit, "discharge_date": admit + rng.geometric(0.2, k).astype("timedelta64[D]"),
        "admission_method": rng.choice(list(ADMISSION_METHODS), k),
        "primary_diagnosis": icd[rng.integers(0, len(icd), k)], "secondary_diagnoses": secondary,
        "discharge_destination": np.full(k, "19"),
    }).with_columns(pl.col("admission_date", "discharge_date").cast(pl.Date)).write_parquet(
        out / "hospital_spells.parquet")

    k = int(n * AE_PER_PERSON)
    pl.DataFrame({
        "person_id": people(k), "arrival_date": dates(k), "arrival_mode": rng.choice(["1", "2"], k),
        "chief_complaint_snomed": snomed[rng.integers(0, len(snomed), k)],
        "diagnosis_snomed": snomed[rng.integers(0, len(snomed), k)], "admitted": rng.random(k) < 0.3,
    }).with_columns(pl.col("arrival_date").cast(pl.Date)).write_parquet(out / "ae_attendances.parquet")

    k = int(n * SOCIAL_CARE_SHARE) * SOCIAL_CARE_EVENTS_PER_CLIENT
    sc_start = dates(k)
    ended = rng.random(k) < 0.5
    pl.DataFrame({
        "person_id": people(k), "event_type": rng.choice(list(CLD_EVENT_TYPES), k),
        "event_start_date": sc_start,
        "event_end_date": np.where(ended, sc_start + rng.integers(1, 200, k).astype("timedelta64[D]"),
                                   np.datetime64("NaT")),
        "service_type": rng.choice(list(CLD_SERVICE_TYPES), k),
        "service_component": rng.choice(list(CLD_SERVICE_COMPONENTS), k),
        "primary_support_reason": rng.choice(list(CLD_SUPPORT_REASONS), k),
        "event_outcome": rng.choice(["Progress to Long Term Support", "No Services Provided"], k),
        "unit_cost": rng.random(k) * 500,
    }).with_columns(pl.col("event_start_date", "event_end_date").cast(pl.Date)).write_parquet(
        out / "social_care_events.parquet")


def ingest_raw(raw: Path, out: Path) -> Path:
    """Run the real ingest on a raw delivery into ``out`` (an ingest OUT dir); returns ``out/clean``."""
    import os
    import tempfile

    os.environ.setdefault("UPSTREAM_PSEUDO_KEY", "bench-key-not-secret")  # same key as bench_train.py
    from expectations.ingest import ingest_delivery
    from upstream.settings import Settings

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as home:
        ingest_delivery(raw, out, Settings(home=Path(home)), build_docs=False)
    print(f"ingested {raw} -> {out} ({time.perf_counter() - t0:.0f}s)")
    return out / "clean"


def measure(clean: Path, index_date: date) -> dict:
    """Build once in this (fresh) process; report wall time and this process's peak RSS."""
    from features.build import build_features

    started = time.perf_counter()
    table = build_features(clean, index_date)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rows": table.height, "columns": table.width, "seconds": round(seconds, 2),
            "peak_rss_gib": round(peak_kib / 1024**2, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=280_000)
    parser.add_argument("--clean", type=Path, default=None)
    parser.add_argument("--index-date", default=None, help="default: end of delivery - 365 days")
    parser.add_argument("--raw", type=Path, default=None, help="raw delivery to ingest if --clean is missing")
    parser.add_argument("--make-local", action="store_true", help="write a local clean-format delivery if absent")
    parser.add_argument("--end-date", default="2025-01-06")
    parser.add_argument("--_measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    clean = args.clean or Path(f"/tmp/upstream_{args.residents // 1000}k_clean")
    end = date.fromisoformat(args.end_date)
    index_date = date.fromisoformat(args.index_date) if args.index_date else end - timedelta(days=365)
    if args._measure:
        print(json.dumps(measure(clean, index_date)))
        return 0
    if (clean / "clean" / "residents.parquet").exists():  # an ingest OUT directory
        clean = clean / "clean"
    if not (clean / "residents.parquet").exists() and args.raw:
        clean = ingest_raw(args.raw, clean)
    if not (clean / "residents.parquet").exists():
        if not args.make_local:
            print(f"{clean} has no residents.parquet: pass --make-local or point --clean at ingest output")
            return 1
        t0 = time.perf_counter()
        make_local_clean(clean, args.residents, end)
        print(f"made local clean delivery in {clean} ({time.perf_counter() - t0:.0f}s)")
    import polars as pl

    sizes = {p.stem: pl.scan_parquet(p).select(pl.len()).collect().item() for p in sorted(clean.glob("*.parquet"))}
    print("rows per source:", json.dumps(sizes))
    child = subprocess.run(
        [sys.executable, __file__, "--clean", str(clean), "--index-date", index_date.isoformat(), "--_measure"],
        check=True, capture_output=True, text=True,
    )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"features for {index_date}: {result['rows']} people x {result['columns']} columns in "
          f"{result['seconds']} s, peak RSS {result['peak_rss_gib']} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
