"""Address history (issue 12 item 4): how many people move, and how much the extract's address snapshot leaks.

For a generated delivery (generated and ingested if missing):
- moves per year by kind (house move, care home, after a death), people and households moving per year;
- at each truth date T: features built with the address held at T (addresses source present) and from the
  residents file's snapshot (the same clean data without addresses.parquet, i.e. a delivery without the
  optional source); how many people's household_size, lives_alone, bereaved_* and imd_decile differ, and the
  share changed among people who had each outcome in the 12 months after T against those who did not
  (leakage concentrates where the move is itself part of the outcome).

    .venv/bin/python bench/bench_addresses.py --root /work/data-BR/i12a/a20k --residents 20000 --seed 7
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("UPSTREAM_PSEUDO_KEY", "bench-key-not-secret")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl

from upstream.settings import Settings

HOUSEHOLD_FEATURES = ("household_size", "lives_alone", "bereaved_3m", "bereaved_6m", "bereaved_12m", "imd_decile")
OUTCOMES = ("care_escalation", "emergency_admission", "crisis")


def _ensure(root: Path, residents: int, seed: int) -> tuple[Path, Path, Settings]:
    raw, ingested = root / "raw", root / "ingest"
    settings = Settings(home=root / "home")
    if not (raw / "residents.parquet").exists():
        from synthetic.generate import generate_delivery

        started = time.perf_counter()
        generate_delivery(raw, residents=residents, seed=seed, workers=1)
        print(f"generated {residents:,} residents in {time.perf_counter() - started:.0f} s")
    if not (ingested / "clean" / "residents.parquet").exists():
        from expectations.ingest import ingest_delivery

        started = time.perf_counter()
        ingest_delivery(raw, ingested, settings, build_docs=False)
        print(f"ingested in {time.perf_counter() - started:.0f} s")
    return raw, ingested / "clean", settings


def _move_counts(raw: Path) -> None:
    import json

    meta = json.loads((raw / "_delivery.json").read_text())
    years, residents = meta["years"], meta["residents"]
    moves = pl.read_parquet(raw / "_truth" / "moves.parquet")
    print(f"\nmoves over {years} years, {residents:,} residents (per year):")
    for kind, count in moves.group_by("kind").len().sort("kind").iter_rows():
        print(f"  {kind:<18} {count / years:>8.0f} person-moves/year")
    people = moves.with_columns(pl.col("move_date").dt.year().alias("year"))
    per_year = people.group_by("year").agg(pl.col("nhs_number").n_unique().alias("people")).sort("year")
    print("  people moving per calendar year: " + ", ".join(f"{y} {n:,} ({n / residents:.1%})"
                                                          for y, n in per_year.iter_rows()))
    house = moves.filter(pl.col("kind") != "care_home").select("to_uprn").n_unique()
    print(f"  households moving per year: {house / years:,.0f}")


def _snapshot_copy(clean: Path, into: Path) -> Path:
    """The same clean data without the address history: what a delivery without the optional source gives."""
    into.mkdir(parents=True, exist_ok=True)
    for path in clean.glob("*.parquet"):
        if path.stem != "addresses":
            os.symlink(path, into / path.name)
    return into


def _compare(raw: Path, clean: Path, snapshot: Path, key: bytes) -> None:
    from expectations.pseudonymise import pseudonymise
    from features.build import build_features

    for truth_path in sorted((raw / "_truth").glob("risk_*.parquet")):
        truth = pl.read_parquet(truth_path)
        T = truth["index_date"][0]
        started = time.perf_counter()
        at_t = build_features(clean, T)
        seconds_at_t = time.perf_counter() - started
        started = time.perf_counter()
        snap = build_features(snapshot, T)
        seconds_snap = time.perf_counter() - started
        truth = truth.with_columns(pseudonymise(truth["nhs_number"], key).alias("person_id"))
        both = at_t.select("person_id", *HOUSEHOLD_FEATURES).join(
            snap.select("person_id", *HOUSEHOLD_FEATURES), on="person_id", suffix="_snap").join(
            truth.select("person_id", *[f"y_{o}" for o in OUTCOMES]), on="person_id")
        changed = {f: ~pl.col(f).eq_missing(pl.col(f"{f}_snap")) for f in HOUSEHOLD_FEATURES}
        flags = both.with_columns(*[e.alias(f"chg_{f}") for f, e in changed.items()],
                                  pl.any_horizontal(*changed.values()).alias("chg_any"))
        print(f"\nT = {T}: {both.height:,} people; features at T {seconds_at_t:.1f} s with addresses, "
              f"{seconds_snap:.1f} s from the snapshot")
        for name in (*HOUSEHOLD_FEATURES, "any"):
            count = int(flags[f"chg_{name}"].sum())
            parts = []
            for outcome in OUTCOMES:
                pos = flags.filter(pl.col(f"y_{outcome}"))[f"chg_{name}"].mean() or 0.0
                neg = flags.filter(~pl.col(f"y_{outcome}"))[f"chg_{name}"].mean() or 0.0
                parts.append(f"{outcome} {pos:.1%} vs {neg:.1%}")
            print(f"  {name:<15} differs for {count:>6,} ({count / both.height:.2%}); changed among outcome yes vs no: "
                  + "; ".join(parts))
        # The care-home leak in one number: living in a care-home-sized household (10+) at T, by method.
        for label, frame in (("at T", at_t), ("snapshot", snap)):
            big = frame.join(truth.select("person_id", "y_care_escalation"), on="person_id").filter(
                pl.col("household_size") >= 10)
            print(f"  {label:<8}: {big.height:,} people in a household of 10+ (a care home) at T; "
                  f"care escalation in the next 12 months among them {big['y_care_escalation'].mean() or 0:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--residents", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    raw, clean, settings = _ensure(args.root, args.residents, args.seed)
    _move_counts(raw)
    with tempfile.TemporaryDirectory(dir=args.root) as tmp:
        snapshot = _snapshot_copy(clean, Path(tmp) / "snapshot")
        _compare(raw, clean, snapshot, settings.pseudonymisation_key())
        shutil.rmtree(snapshot)


if __name__ == "__main__":
    main()
