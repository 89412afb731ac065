"""The HistGradientBoosting candidate's fit cost against its quality, one config per line (issue 15 item 2).

Why: the HGB candidate's fit was the largest piece of the county training week (146 CPU s of the train step
at 1.9M). Its learning rate, ``max_bins``, early stopping and the rows it is fitted on are modelling choices,
so each is judged on quality, not only speed: the training frames of one run are assembled once (exactly
as ``train_and_register`` does: list cohort, sampled fitting and validation dates, full test date) and every
config is fitted on them, then scored on the validation date (what chooses the model) and the test date
(AUROC with bootstrap CI, gap to the generator's oracle, calibration slope, O/E overall and by age band).

    flock /tmp/upstream-heavy.lock .venv/bin/python bench/bench_train_hgb.py --raw /work/data-i12g/default280k \
        --clean /work/data-i12g/default280k_out --world default --sample 60000
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("UPSTREAM_PSEUDO_KEY", "bench-key-not-secret")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl

from upstream.settings import Settings

#: name -> overrides of models.params.HGB_PARAMS ("rows": fraction of the fitting rows the candidate sees).
CONFIGS: dict[str, dict] = {  # and "logistic", the other candidate, for reference
    "base (lr 0.06)": {},
    "lr 0.09": {"learning_rate": 0.09},
    "lr 0.12": {"learning_rate": 0.12},
    "lr 0.12 + max_bins 63": {"learning_rate": 0.12, "max_bins": 63},
    "lr 0.12 + no_change 10": {"learning_rate": 0.12, "n_iter_no_change": 10},
    "lr 0.06 + no_change 10": {"n_iter_no_change": 10},
    "lr 0.06 + half rows": {"rows": 0.5},
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--clean", type=Path, required=True)
    parser.add_argument("--world", default="default")
    parser.add_argument("--target", default="crisis")
    parser.add_argument("--sample", type=int, default=60_000)
    parser.add_argument("--configs", default=";".join(["logistic", *CONFIGS]),
                        help="semicolon-separated names from CONFIGS, or logistic")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds: the calibration hold-out and HGB's "
                        "early-stopping split differ by seed, so a config's effect is checked over several")
    parser.add_argument("--threads", type=int, default=1,
                        help="OpenMP threads for the fits: 1 keeps CPU seconds free of the spin-waiting that a busy "
                             "machine adds to scikit-learn's parallel histogram loops (the models are the same)")
    args = parser.parse_args()

    from bench_train import ensure_delivery, truth_for
    from threadpoolctl import threadpool_limits

    import models.params as params
    import models.train as train
    from models.fairness import fairness_audit
    from models.gate import calibration_in_the_large
    from models.metrics import auroc, calibration_slope_intercept, evaluate

    threadpool_limits(args.threads)
    base_params = dict(params.HGB_PARAMS)
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        clean = ensure_delivery(args.raw, args.clean, 280_000, 1, args.world, settings)
        test_date, truth = truth_for(args.raw, clean, settings.pseudonymisation_key(), args.target)
    t = time.perf_counter()
    dates = train.choose_method_dates(clean, test_date + timedelta(days=365), train.default_history_days(settings),
                                      test_date)
    fit = train.assemble(clean, dates.fit, sample=args.sample, seed=0, cohort=settings.cohort)
    validation = train.assemble(clean, [dates.validation], sample=args.sample, seed=len(dates.fit),
                                cohort=settings.cohort)
    test = train.assemble(clean, [dates.test], cohort=settings.cohort)
    test = test.join(truth, on="person_id", how="left", maintain_order="left")
    print(f"{args.world}: fit {dates.fit} ({fit.height} rows), validation {dates.validation} ({validation.height}),"
          f" test {dates.test} ({test.height}, {test['p_true'].null_count()} without truth); assembled in"
          f" {time.perf_counter() - t:.0f} s, load {os.getloadavg()[0]:.1f}")
    features = train.model_feature_names(fit)
    y_val = validation[args.target].to_numpy().astype(bool)
    y_test = test[args.target].to_numpy().astype(bool)
    known = test["p_true"].is_not_null().to_numpy()
    oracle = auroc(y_test[known], test["p_true"].to_numpy()[known])
    print(f"oracle test AUROC {oracle:.4f}")

    names = args.configs.split(";")
    runs = [("logistic", n, {}) if n == "logistic" else ("hgb", n, CONFIGS[n]) for n in names]
    for (kind, name, overrides), seed in [(run, int(seed)) for run in runs for seed in args.seeds.split(",")]:
        overrides = dict(overrides)
        rows = overrides.pop("rows", 1.0)
        params.HGB_PARAMS.clear()
        params.HGB_PARAMS.update(base_params | overrides)
        frame = fit if rows == 1.0 else fit.filter(pl.Series(~train.calibration_holdout(fit, 1 - rows, 4242)))
        wall, cpu = time.perf_counter(), _cpu()
        model = train.fit_candidates(frame, features, args.target, seed=seed, kinds=(kind,))[kind]
        wall, cpu = time.perf_counter() - wall, _cpu() - cpu
        base = model.estimator.estimator.estimator
        n_iter = getattr(base, "n_iter_", None)
        p_val = model.predict_proba(validation)
        misfits = calibration_in_the_large(fairness_audit(validation, y_val, p_val), settings.gate)
        p_test = model.predict_proba(test)
        m = evaluate(y_test, p_test, n_boot=200, seed=0)
        slope = calibration_slope_intercept(y_test, p_test)[0]
        audit = fairness_audit(test, y_test, p_test).filter(pl.col("dimension").is_in(["overall", "age_band"]))
        oe = " ".join(f"{g}={v:.3f}" for g, v in zip(audit["group"], audit["observed_expected"], strict=True))
        model_on_known = auroc(y_test[known], p_test[known])
        print(f"[{name}, seed {seed}] fit {wall:.1f} s wall {cpu:.1f} s CPU, rows {frame.height}, iterations {n_iter}; "
              f"validation AUROC {auroc(y_val, p_val):.4f} misfits {len(misfits)}; test AUROC {m['auroc']:.4f} "
              f"({m['auroc_ci_low']:.4f}-{m['auroc_ci_high']:.4f}) gap to oracle {oracle - model_on_known:+.4f}; "
              f"slope {slope:.3f}; O/E {oe}; load {os.getloadavg()[0]:.1f}", flush=True)
    params.HGB_PARAMS.clear()
    params.HGB_PARAMS.update(base_params)


if __name__ == "__main__":
    main()
