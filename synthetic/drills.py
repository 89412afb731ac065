"""Monitoring drills (issue 16): copies of a delivery with a known, deliberate change.

The weekly monitoring must raise its drift and volume alerts on these, and nothing on an unchanged
delivery. Each drill copies the delivery (the original is never touched) and changes one thing.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import polars as pl

DRILLS = ("unchanged", "older", "half_gp_events", "gp_events_40pc_missing")


def copy_delivery(src: Path, dst: Path) -> Path:
    """A copy without the generator's truth (a drill's truth would no longer match)."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("_truth", "_demo.json"))
    return dst


def older_population(src: Path, dst: Path, years: int = 8) -> Path:
    """Everyone born ``years`` earlier: the same people, ``years`` older (every other source unchanged).

    Eight years (was 5): monitoring alerts on age at a standardised mean difference of 0.20, and generator 1.8's
    ages spread more evenly over 18-105 (standard deviation 25.1 years in the drill's 3,000-resident delivery), so
    five years came to 0.199, just under the alert; eight is 0.32, a change the alert must catch."""
    copy_delivery(src, dst)
    path = dst / "residents.parquet"
    residents = pl.read_parquet(path)
    residents.with_columns(pl.col("date_of_birth").dt.offset_by(f"-{years}y")).write_parquet(path)
    return dst


def half_missing(src: Path, dst: Path, source: str = "gp_events", seed: int = 0, missing: float = 0.5) -> Path:
    """A share of one source's rows missing (a feed that stopped part-way): a random ``missing`` share dropped.

    Half missing is refused by ingest's own table check (row count change >= 0.5 fails the delivery);
    40% missing passes ingest (which only warns) and must be caught by monitoring's volume alert."""
    copy_delivery(src, dst)
    path = dst / f"{source}.parquet"
    frame = pl.read_parquet(path)
    # Keep at most (1 - missing) of the rows: round() kept the larger half of an odd count, a change just under
    # 0.5, so whether ingest refused "half missing" hung on the parity of the row count (generator 1.6's
    # 3,000-resident drill delivery has an odd number of GP events and was only warned about).
    keep = math.floor(frame.height * (1 - missing))
    frame.sample(n=keep, seed=seed, shuffle=False).write_parquet(path)
    return dst


def make_drill(name: str, src: Path, dst: Path) -> Path:
    if name == "unchanged":
        return copy_delivery(src, dst)
    if name == "older":
        return older_population(src, dst)
    if name == "half_gp_events":
        return half_missing(src, dst, "gp_events")
    if name == "gp_events_40pc_missing":
        return half_missing(src, dst, "gp_events", missing=0.4)
    raise ValueError(f"unknown drill {name!r}; choose one of {', '.join(DRILLS)}")
