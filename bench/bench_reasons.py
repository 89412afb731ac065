"""Exact reasons for the registered champion: models.treeshap against shap.TreeExplainer, CPU per person.

Usage: .venv/bin/python bench/bench_reasons.py --home W/home --features W/home/weeks/<week>/features/all.parquet
       [--rows 20000] [--shap-rows 2000]

Prints CPU seconds (process time: meaningful on a busy shared machine, unlike wall time) for the
vectorised TreeSHAP and for shap's TreeExplainer on the same people, the largest difference between
the two, and how far contributions + base value are from the model's raw margin.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cpu(fn):
    started, wall = time.process_time(), time.perf_counter()
    result = fn()
    return time.process_time() - started, time.perf_counter() - wall, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--shap-rows", type=int, default=2_000)
    args = parser.parse_args()
    os.environ.setdefault("UPSTREAM_PSEUDO_KEY", "bench-key-not-secret")

    import numpy as np
    import polars as pl
    import shap

    from models.registry import champion_or_none
    from models.treeshap import _compiled, expected_value, tree_shap_values
    from upstream.settings import Settings

    bundle = champion_or_none(Settings(home=args.home)).bundle
    assert bundle.kind == "hgb", "the champion is logistic: its reasons are its own terms, nothing to compare"
    model = bundle.base_estimator
    x = bundle.encoder.transform(pl.read_parquet(args.features).head(args.rows))
    depths = [p[0].nodes["depth"].max() for p in model._predictors]
    print(f"champion: {model.n_iter_} trees, mean depth {np.mean(depths):.1f}, {x.shape[1]} encoded columns")
    t_compile, _, _ = cpu(lambda: _compiled(model))
    t_ours, w_ours, ours = cpu(lambda: tree_shap_values(model, x))
    t_shap, _, theirs = cpu(lambda: shap.TreeExplainer(model).shap_values(x[: args.shap_rows], check_additivity=False))
    per_ours, per_shap = t_ours / len(x) * 1e6, t_shap / args.shap_rows * 1e6
    print(f"tables (once per model): {t_compile:.2f} s CPU")
    print(f"models.treeshap: {len(x):,} people in {t_ours:.2f} s CPU ({w_ours:.1f} s wall): {per_ours:.0f} us/person")
    print(f"shap.TreeExplainer: {args.shap_rows:,} people in {t_shap:.2f} s CPU: {per_shap:.0f} us/person "
          f"(ratio {per_shap / per_ours:.1f}x)")
    print(f"largest difference from shap: {np.abs(ours[: args.shap_rows] - theirs).max():.1e}")
    print(f"additivity: {np.abs(ours.sum(1) + expected_value(model) - model.decision_function(x)).max():.1e}")
    print(f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
