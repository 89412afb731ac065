"""``upstream features``: build the point-in-time feature table for one index date."""

from __future__ import annotations

import argparse
import logging
import time
from datetime import date
from pathlib import Path

from upstream.errors import UpstreamError

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clean", required=True, type=Path, help="ingest's OUT/clean directory (OUT itself also works)")
    parser.add_argument("--index-date", required=True, help="index date T, YYYY-MM-DD (events before T only)")
    parser.add_argument("--out", required=True, type=Path, help="output parquet file")


def parse_index_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise UpstreamError(f"--index-date must be YYYY-MM-DD, got {text!r}") from exc


def run(args: argparse.Namespace) -> int:
    from features.build import build_features

    index_date = parse_index_date(args.index_date)
    clean: Path = args.clean
    if not (clean / "residents.parquet").exists() and (clean / "clean" / "residents.parquet").exists():
        clean = clean / "clean"  # given ingest's OUT directory rather than OUT/clean
    started = time.perf_counter()
    table = build_features(clean, index_date)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a reader never sees a half-written table.
    partial = out.with_name(out.name + ".partial")
    table.write_parquet(partial)
    partial.replace(out)
    print(f"features: {table.height} people x {table.width} columns for {index_date} -> {out} "
          f"({time.perf_counter() - started:.1f}s)")
    return 0
