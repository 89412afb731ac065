"""Training quality and speed on a generated delivery (issue 5 items 8 and 9).

Prints, for the test index date (the generator's latest fully observed truth date):
- the registered model's test AUROC next to the oracle AUROC (the generator's true probabilities, same
  people, same date) and the age-only baseline (goal: within 0.03 of oracle, >= 0.05 above age only);
- agreement of models.labels with the generator's realised outcomes (y_*), as a cross-check;
- training wall time against the 5-minute budget, and explain() time for the whole test population.

    .venv/bin/python bench/bench_train.py --raw /tmp/upstream_280k --clean /tmp/upstream_280k_clean \
        --residents 280000 [--target crisis] [--sample N]

Missing raw/clean directories are created (generate, then ingest). MLflow goes to a temporary home.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("UPSTREAM_PSEUDO_KEY", "bench-key-not-secret")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl

from upstream.settings import Settings


def ensure_delivery(raw: Path, clean_root: Path, residents: int, seed: int, world: str, settings: Settings) -> Path:
    """Generate and ingest if needed; returns the clean directory."""
    if not (raw / "residents.parquet").exists():
        from synthetic.generate import generate_delivery

        t = time.perf_counter()
        generate_delivery(raw, residents=residents, seed=seed, world=world)
        print(f"generated {residents} residents in {time.perf_counter() - t:.0f} s")
    for candidate in (clean_root / "clean", clean_root):
        if (candidate / "residents.parquet").exists():
            return candidate
    from expectations.ingest import ingest_delivery

    t = time.perf_counter()
    ingest_delivery(raw, clean_root, settings)
    print(f"ingested in {time.perf_counter() - t:.0f} s")
    return clean_root / "clean"


def truth_for(raw: Path, clean: Path, key: bytes, target: str) -> tuple[date, pl.DataFrame]:
    """The latest truth date with a fully observed outcome window, with nhs_number mapped to person_id."""
    from expectations.pseudonymise import pseudonymise
    from models.labels import data_end

    end = data_end(clean)
    dates = sorted(date.fromisoformat(p.stem.removeprefix("risk_")) for p in (raw / "_truth").glob("risk_*.parquet"))
    usable = [d for d in dates if d + timedelta(days=365) <= end + timedelta(days=1)]
    if not usable:
        raise SystemExit(f"no truth date with a complete outcome window before {end}: {dates}")
    day = usable[-1]
    truth = pl.read_parquet(raw / "_truth" / f"risk_{day}.parquet").filter(pl.col("eligible"))
    truth = truth.with_columns(pseudonymise(truth["nhs_number"], key).alias("person_id"))
    return day, truth.select("person_id", pl.col(f"p_{target}").alias("p_true"), pl.col(f"y_{target}").alias("y_true"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=Path("/tmp/upstream_280k"))
    parser.add_argument("--clean", type=Path, default=Path("/tmp/upstream_280k_clean"))
    parser.add_argument("--residents", type=int, default=280_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--world", default="default")
    parser.add_argument("--target", default="crisis")
    parser.add_argument("--sample", type=int, default=None)
    args = parser.parse_args()

    from models.labels import build_labels
    from models.metrics import auroc
    from models.registry import load_model
    from models.train import train_and_register

    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        clean = ensure_delivery(args.raw, args.clean, args.residents, args.seed, args.world, settings)
        key = settings.pseudonymisation_key()
        test_date, truth = truth_for(args.raw, clean, key, args.target)
        index_date = test_date + timedelta(days=365)

        t = time.perf_counter()
        result = train_and_register(clean, args.target, index_date, settings, sample=args.sample, test_date=test_date)
        train_seconds = time.perf_counter() - t

        from features.build import build_features

        features = build_features(clean, test_date)
        labels = build_labels(clean, test_date)
        from expectations.cohort import cohort_at, in_cohort

        # The population the model is trained and tested on: the list cohort at the test date.
        cohort = in_cohort(cohort_at(clean, test_date, settings.cohort)).select("person_id")
        frame = (features.join(labels, on="person_id", how="inner").join(truth, on="person_id", how="inner")
                 .join(cohort, on="person_id", how="semi"))
        model = load_model(args.target, settings, result.alias)
        p = model.predict_proba(frame)
        t = time.perf_counter()
        model.explain(features, 3)
        explain_seconds = time.perf_counter() - t

    y = frame[args.target].to_numpy()
    model_auroc = auroc(y, p)
    oracle = auroc(frame["y_true"].to_numpy(), frame["p_true"].to_numpy())
    oracle_on_our_labels = auroc(y, frame["p_true"].to_numpy())
    agreement = float((frame[args.target] == frame["y_true"]).mean())
    age = result.baselines["age_only"]["auroc"]
    print(f"delivery {args.raw} ({args.world} world), target {args.target}, test date {test_date}")
    print(f"  people in test set: {result.n_test}; matched to truth: {frame.height} (truth eligible {truth.height})")
    print(f"  labels agree with generator y_{args.target}: {agreement:.4%}")
    print(f"  chosen {result.chosen} -> version {result.version} alias {result.alias}")
    print(f"  model AUROC {model_auroc:.4f} (logged test_auroc {result.metrics['test_auroc']:.4f}"
          f" CI {result.metrics['test_auroc_ci_low']:.4f}-{result.metrics['test_auroc_ci_high']:.4f})")
    print(f"  oracle AUROC {oracle:.4f} (on our labels {oracle_on_our_labels:.4f}); gap {oracle - model_auroc:+.4f}"
          f" (goal <= 0.03)")
    print(f"  age-only AUROC {age:.4f}; model minus age-only {model_auroc - age:+.4f} (goal >= 0.05)")
    for name, m in result.candidates.items():
        print(f"  candidate {name}: AUROC {m['auroc']:.4f} slope {m['calibration_slope']:.3f}")
    for name, m in result.baselines.items():
        print(f"  baseline {name}: AUROC {m['auroc']:.4f}")
    m = result.metrics
    print(f"  fitting dates {result.train_dates[:-1]}, validation date {result.train_dates[-1]} (chosen by "
          f"validation AUROC {m.get('validation_auroc', float('nan')):.4f}), test date {result.test_date}")
    print(f"  calibration slope {m['test_calibration_slope']:.3f}")
    calib = result.fairness.filter(pl.col("dimension").is_in(["overall", "age_band"]))
    for row in calib.iter_rows(named=True):
        print(f"  O/E {row['dimension']} {row['group']}: {row['observed_expected']:.3f} ({row['events']} events, "
              f"n {row['n']})")
    print(f"  gate: {result.alias} on the first run; " + ("; ".join(result.gate_reasons) or "passed"))
    print(f"  training wall time {train_seconds:.0f} s (budget 300 s, ratio {train_seconds / 300:.2f});"
          f" timings {({k: round(v, 1) for k, v in result.timings.items()})}")
    print(f"  explain(top 3) for {features.height} people: {explain_seconds:.1f} s (budget ~20 s)")


if __name__ == "__main__":
    main()
