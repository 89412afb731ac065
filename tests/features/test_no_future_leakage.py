"""Whole-table point-in-time check: deleting everything on or after T changes no feature.

A random clean delivery (the bench's local maker: every source, 3 years, codes from the shipped
lists) is built twice at the same T: as is, and with every event dated T or later removed and
every end date on or after T blanked (a spell or service not yet ended is what T would see).
If any feature used information from T onwards, the two tables would differ.
"""

from __future__ import annotations

import importlib.util
from datetime import date
from pathlib import Path

import polars as pl

from features.build import build_features

ROOT = Path(__file__).resolve().parents[2]
T = date(2023, 9, 4)


def _local_maker():
    spec = importlib.util.spec_from_file_location("bench_features", ROOT / "bench" / "bench_features.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_local_clean


def truncate(src: Path, dst: Path, cut: date) -> None:
    """Copy a clean delivery keeping only what was known before ``cut``."""
    dst.mkdir(parents=True)
    blank_if_after = lambda c: pl.when(pl.col(c) < cut).then(pl.col(c)).otherwise(None).alias(c)  # noqa: E731
    residents = pl.read_parquet(src / "residents.parquet").with_columns(blank_if_after("date_of_death"))
    residents.write_parquet(dst / "residents.parquet")
    pl.read_parquet(src / "deaths.parquet").filter(pl.col("date_of_death") < cut).write_parquet(dst / "deaths.parquet")
    pl.read_parquet(src / "gp_events.parquet").filter(pl.col("event_date") < cut).write_parquet(dst / "gp_events.parquet")
    pl.read_parquet(src / "hospital_spells.parquet").filter(pl.col("admission_date") < cut).with_columns(
        blank_if_after("discharge_date")).write_parquet(dst / "hospital_spells.parquet")
    pl.read_parquet(src / "ae_attendances.parquet").filter(pl.col("arrival_date") < cut).write_parquet(
        dst / "ae_attendances.parquet")
    pl.read_parquet(src / "social_care_events.parquet").filter(pl.col("event_start_date") < cut).with_columns(
        blank_if_after("event_end_date")).write_parquet(dst / "social_care_events.parquet")
    if (src / "addresses.parquet").exists():  # the optional address history: moves before the cut only
        pl.read_parquet(src / "addresses.parquet").filter(pl.col("from_date") < cut).with_columns(
            blank_if_after("to_date")).write_parquet(dst / "addresses.parquet")


def test_events_on_or_after_t_change_nothing(tmp_path: Path) -> None:
    full = tmp_path / "full"
    _local_maker()(full, 4000, date(2025, 1, 6), seed=5)
    past = tmp_path / "past"
    truncate(full, past, T)
    removed = sum(
        pl.read_parquet(full / f"{s}.parquet").height - pl.read_parquet(past / f"{s}.parquet").height
        for s in ("gp_events", "hospital_spells", "ae_attendances", "social_care_events")
    )
    assert removed > 10_000  # the delivery really has a lot of future to leak
    a, b = build_features(full, T), build_features(past, T)
    assert a.height > 3000
    assert a.equals(b, null_equal=True)
