"""The score step by its parts, in one process: where the wall time of ``score`` goes.

Usage: .venv/bin/python bench/bench_score.py --home W/home --features W/home/weeks/<week>/features/all.parquet

Runs the same functions the weekly flow's score step runs (champion load, read, encode, predict, exact
contributions, reason ranking, reason JSON, banding, the score-history insert into a fresh SQLite file in a
temp dir) and prints wall and CPU seconds of each, so a slow step can be attributed without a profiler.
The weekly flow's own figure is ``bench/bench_weekly.py``'s ``score`` timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(label: str, fn: Callable[[], Any], rows: list[tuple[str, float, float]]) -> Any:
    started, wall = time.process_time(), time.perf_counter()
    result = fn()
    rows.append((label, time.perf_counter() - wall, time.process_time() - started))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--rows", type=int, default=None, help="only the first N residents")
    args = parser.parse_args()
    os.environ.setdefault("UPSTREAM_PSEUDO_KEY", "bench-key-not-secret")

    import polars as pl

    from models.registry import champion_or_none
    from pipelines.score_history import start_score_run, write_scores
    from pipelines.scoring import assign_bands, encode_reason, encode_reasons
    from upstream.settings import Settings
    from upstream.store import get_engine

    rows: list[tuple[str, float, float]] = []
    settings = Settings(home=Path(args.home))
    model = timed("champion load (MLflow)", lambda: champion_or_none(settings), rows)
    bundle = model.bundle
    features = timed("read features parquet", lambda: pl.read_parquet(args.features), rows)
    if args.rows:
        features = features.head(args.rows)
    x = timed("encode", lambda: bundle.encoder.transform(features), rows)
    proba = timed("predict (calibrated)", lambda: bundle.estimator.predict_proba(x)[:, 1], rows)
    contributions = timed("exact contributions", lambda: bundle.contributions(x), rows)
    from models.reasons import top_reasons, top_reasons_json

    top_n = settings.lists.top_reasons
    reasons = timed("top reasons as dicts", lambda: top_reasons(contributions, features, bundle.encoder.features, top_n),
                    rows)
    timed("reasons dicts to JSON", lambda: encode_reasons(reasons), rows)
    label = "reasons straight to JSON"  # what the score step runs instead of the two lines above
    encoded = timed(label, lambda: top_reasons_json(contributions, features, bundle.encoder.features, top_n,
                                                    encode_reason), rows)
    assert encoded == encode_reasons(reasons), "the two ways to reasons JSON must give the same text"
    scored = pl.DataFrame({
        "person_id": features["person_id"].cast(pl.String),
        "locality": features["locality"].cast(pl.String).fill_null("Unknown"),
        "score": proba,
        "in_long_term_care": features["in_long_term_care"].fill_null(False).cast(pl.Boolean),
        "reasons": encoded,
    })
    banded = timed("bands", lambda: assign_bands(scored), rows)
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        engine = get_engine(f"sqlite:///{tmp}/upstream.db")
        start_score_run(engine, run_id="bench", week="2026-W01", index_date=date(2026, 1, 1), target="t",
                        model_name="m", model_version="1")
        timed("insert scores (SQLite)", lambda: write_scores(engine, "bench", banded), rows)
        engine.dispose()
    step = [r for r in rows if not r[0].startswith(("top reasons", "reasons dicts"))]  # the score step's own parts
    total_wall, total_cpu = sum(r[1] for r in step), sum(r[2] for r in step)
    print(f"{features.height:,} residents; load average {os.getloadavg()[0]:.1f}")
    print(f"{'part':<28}{'wall s':>9}{'CPU s':>9}")
    for label, wall, cpu in rows:
        print(f"{label:<28}{wall:>9.2f}{cpu:>9.2f}")
    print(f"{'total (score step parts)':<28}{total_wall:>9.2f}{total_cpu:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
