"""Fan-out: split a week's clean data per locality and build each share's point-in-time features."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import polars as pl

from expectations.cohort import opted_out_people
from pipelines.lists import locality_file_stem

#: The one partition of a run that does not fan out (the whole clean delivery).
ALL_PARTITION = "all"


def partition_clean(clean_dir: Path, out_root: Path) -> dict[str, Path]:
    """Split clean data per locality (residents by locality; events by their person), for fan-out.

    Features only look at a resident's own events and their household (same UPRN, hence same
    locality), so per-locality features equal the whole-population features.
    """
    clean_dir = Path(clean_dir)
    residents = pl.read_parquet(clean_dir / "residents.parquet").with_columns(pl.col("locality").fill_null("Unknown"))
    if out_root.exists():
        shutil.rmtree(out_root)
    sources = [p for p in sorted(clean_dir.glob("*.parquet")) if p.stem != "residents"]
    events = {p.stem: pl.read_parquet(p) for p in sources}
    parts: dict[str, Path] = {}
    for locality, people in residents.group_by("locality", maintain_order=True):
        name = str(locality[0])
        part_dir = out_root / locality_file_stem(name)
        part_dir.mkdir(parents=True)
        people.write_parquet(part_dir / "residents.parquet")
        ids = people.select("person_id")
        for source, frame in events.items():
            frame.join(ids, on="person_id", how="semi").write_parquet(part_dir / f"{source}.parquet")
        parts[name] = part_dir
    return dict(sorted(parts.items()))


def fresh_dir(path: Path) -> Path:
    """An empty directory (a re-run must not mix in files of an earlier run's partitioning)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def build_partition_features(clean_dir: Path, index_date: date, out_path: Path) -> Path:
    """Build one partition's point-in-time features and keep them on disk (small messages between workers)."""
    from features.build import build_features

    features = build_features(Path(clean_dir), index_date)
    opted_out = opted_out_people(Path(clean_dir))
    if opted_out:  # never scored, never listed, never shown (DESIGN §7); still counted in the cohort funnel
        features = features.filter(~pl.col("person_id").is_in(opted_out))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".parquet.tmp")
    features.write_parquet(tmp)
    os.replace(tmp, out_path)
    return out_path
