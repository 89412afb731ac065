"""Wall and CPU seconds of each piece of one training run (``models.train.train_and_register``), issue 15.

Why: the weekly bench gives the train step as one figure; to cut it, each piece (features per date, labels,
cohort, each model's fit, evaluation, fairness, MLflow) must be timed on its own, in CPU seconds as well,
because the machine is shared and wall time mostly says how busy it was. The pieces are wrapped with a
timer; nothing they do changes.

    flock /tmp/upstream-heavy.lock .venv/bin/python bench/bench_train_steps.py CLEAN_DIR [SAMPLE|none] [INDEX_DATE]
    # e.g. the 1.9M weekly pass's W46 ingest: CLEAN_DIR=W/home/weeks/2026-W46/ingest/clean 200000 2026-11-15
"""

from __future__ import annotations

import collections
import functools
import os
import resource
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("UPSTREAM_PSEUDO_KEY", "bench-key-not-secret")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


TIMES: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])  # name -> calls, wall, CPU
FITS: list[tuple[str, object, int]] = []


def _timed(owner: object, name: str, label: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        wall, cpu = time.perf_counter(), _cpu()
        try:
            return original(*args, **kwargs)
        finally:
            entry = TIMES[label]
            entry[0] += 1
            entry[1] += time.perf_counter() - wall
            entry[2] += _cpu() - cpu
            if name == "fit" and args:
                FITS.append((label, getattr(args[0], "n_iter_", None), len(args[1])))

    setattr(owner, name, timed)


def main() -> None:
    import polars as pl
    import sklearn.ensemble
    import sklearn.linear_model

    import expectations.cohort as cohort
    import features.build as build
    import models.bundle as bundle
    import models.labels as labels
    import models.tracking as tracking
    import models.train as train
    from upstream.settings import Settings

    for owner, name in [(build, "build_features"), (labels, "build_labels"), (cohort, "cohort_at"),
                        (train, "fit_candidates"), (train, "fit_baselines"), (train, "draw_from_cohort"), (train, "evaluate"),
                        (train, "fairness_audit"), (train, "log_and_register"), (train, "files_fingerprint"),
                        (bundle.UpstreamModel, "predict_proba"), (tracking, "_log_evaluation"),
                        (tracking, "_log_training_data"), (tracking, "_register")]:
        _timed(owner, name, f"{getattr(owner, '__name__', owner)}.{name}")
    train.build_labels = labels.build_labels  # train imported it by name
    for model in (sklearn.linear_model.LogisticRegression, sklearn.ensemble.HistGradientBoostingClassifier):
        _timed(model, "fit", f"{model.__name__}.fit")

    clean = Path(sys.argv[1])
    sample = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] != "none" else None
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        index_date = date.fromisoformat(sys.argv[3]) if len(sys.argv) > 3 else labels.data_end(clean) + timedelta(1)
        wall, cpu = time.perf_counter(), _cpu()
        result = train.train_and_register(clean, "crisis", index_date, settings, sample=sample)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        print(f"TOTAL wall {time.perf_counter() - wall:.1f} s, CPU {_cpu() - cpu:.1f} s, load {os.getloadavg()[0]:.1f}, "
              f"peak {peak:.1f} GiB")
    for label, (calls, seconds, cpu_seconds) in sorted(TIMES.items(), key=lambda kv: -kv[1][2]):
        print(f"{seconds:7.1f} s wall {cpu_seconds:7.1f} s CPU  x{calls:<3d} {label}")
    print("fits (model, n_iter_, rows):", FITS)
    print("chosen", result.chosen, result.alias, "n_train", result.n_train, "n_test", result.n_test,
          {k: round(v, 4) for k, v in result.metrics.items()
           if k in ("test_auroc", "test_auroc_ci_low", "test_auroc_ci_high", "test_calibration_slope")})
    oe = result.fairness.filter(pl.col("dimension").is_in(["overall", "age_band"]))
    print("O/E", {g: round(v, 3) for g, v in zip(oe["group"], oe["observed_expected"], strict=True)},
          "events", dict(zip(oe["group"], oe["events"], strict=True)))
    print("candidates (test AUROC, validation AUROC)",
          {k: (round(v["auroc"], 4), round(v.get("validation_auroc", float("nan")), 4)) for k, v in result.candidates.items()})


if __name__ == "__main__":
    main()
