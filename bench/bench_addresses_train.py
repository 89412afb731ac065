"""Address history and the model (issue 12 item 4): train with the address held at T and with the extract's snapshot.

The same clean delivery trained twice with identical settings and seed:
(a) **at T**: the delivery as ingested, with the optional ``addresses`` source, so household size, lives alone,
    bereavement and IMD use the address held at each training/test date;
(b) **snapshot**: the same clean files without ``addresses.parquet`` (what a delivery without the optional source
    gives), so those features use the residents file's address at the EXTRACT, after every training date and after
    the test date's outcome window: a move into a care home (itself part of the outcome) leaks back to T.

Each model is evaluated on the test date (the generator's latest fully observed truth date) against the oracle
(the generator's true probabilities, same people): AUROC with its bootstrap CI, calibration slope, O/E overall and by
age band. The snapshot model is evaluated twice: on snapshot test features (its *apparent* score, what training
reported) and on features at T (what it scores in use: at the scoring date the extract's address IS the address at
T, so the leak is gone and only what the model learnt from it remains). The leak itself is shown on the people who
move into a care home in the outcome window (``_truth/moves.parquet``): their predicted risk and how many of them
the top 5% / 20% catches, in each evaluation.

    flock /tmp/upstream-heavy.lock .venv/bin/python bench/bench_addresses_train.py \
        --raw /work/data-s3/d60k --clean /work/data-s3/d60k_out/clean --work /work/data-i12w/at60k [--target crisis]

``--clean`` is only read: each arm gets its own directory of symbolic links under ``--work``. MLflow goes to a
temporary home per arm.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from upstream.cli import no_phone_home

no_phone_home()
os.environ.setdefault("UPSTREAM_PSEUDO_KEY", "bench-key-not-secret")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from bench.bench_train import truth_for  # noqa: E402
from upstream.settings import Settings  # noqa: E402

ADDRESS_FILE = "addresses.parquet"


def arm_directory(clean: Path, into: Path, *, with_addresses: bool) -> Path:
    """A directory of links to ``clean``'s parquet files, without the address history for the snapshot arm."""
    into.mkdir(parents=True, exist_ok=True)
    for path in sorted(clean.glob("*.parquet")):
        if path.name == ADDRESS_FILE and not with_addresses:
            continue
        link = into / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    return into


def care_home_movers(raw: Path, key: bytes, start: date, days: int = 365) -> pl.DataFrame:
    """person_id of people who move into a care home in [start, start + days): the generator's recorded moves."""
    from expectations.pseudonymise import pseudonymise

    moves = pl.read_parquet(raw / "_truth" / "moves.parquet").filter(
        (pl.col("kind") == "care_home") & (pl.col("move_date") >= start)
        & (pl.col("move_date") < start + timedelta(days=days)))
    return moves.select(pseudonymise(moves["nhs_number"], key).alias("person_id")).unique()


def evaluation(label: str, model: object, frame: pl.DataFrame, target: str, movers: pl.DataFrame) -> dict:
    """The metrics of ``model`` on ``frame`` (features, label, truth): printed and returned as one table row."""
    from models.fairness import fairness_audit
    from models.metrics import auroc, evaluate, top_flags

    p = np.asarray(model.predict_proba(frame), dtype=np.float64)  # type: ignore[attr-defined]
    y = frame[target].to_numpy().astype(bool)
    m = evaluate(y, p)
    oracle = auroc(frame["y_true"].to_numpy().astype(bool), frame["p_true"].to_numpy())
    fair = fairness_audit(frame, y, p).filter(pl.col("dimension").is_in(["overall", "age_band"]))
    oe = {row["group"]: (row["observed_expected"], row["events"]) for row in fair.iter_rows(named=True)}
    mover = frame["person_id"].is_in(movers["person_id"].implode()).to_numpy()
    top5, top20 = top_flags(p, 0.05), top_flags(p, 0.20)
    row = {
        "label": label, "n": frame.height, "events": int(y.sum()), "auroc": m["auroc"],
        "ci": (m["auroc_ci_low"], m["auroc_ci_high"]), "oracle": oracle, "slope": m["calibration_slope"],
        "oe": oe, "movers": int(mover.sum()),
        "movers_mean_p": float(p[mover].mean()) if mover.any() else float("nan"),
        "others_mean_p": float(p[~mover].mean()),
        "movers_top5": int((top5 & mover).sum()), "movers_top20": int((top20 & mover).sum()),
        "movers_auroc_vs_rest": auroc(mover, p) if mover.any() else float("nan"),
    }
    bands = ", ".join(f"{g} {v[0]:.2f} ({v[1]} ev)" for g, v in oe.items() if g != "all")
    print(f"  {label}: n {row['n']:,}, events {row['events']:,}; AUROC {row['auroc']:.4f} "
          f"(95% CI {row['ci'][0]:.4f}-{row['ci'][1]:.4f}); oracle {oracle:.4f}, gap {oracle - row['auroc']:+.4f}; "
          f"slope {row['slope']:.3f}; O/E overall {oe['all'][0]:.3f}; by age band {bands}")
    print(f"    care-home movers in the outcome window: {row['movers']} people; mean predicted risk "
          f"{row['movers_mean_p']:.3f} vs {row['others_mean_p']:.3f} for the rest; in top 5% {row['movers_top5']}, "
          f"top 20% {row['movers_top20']}; AUROC movers-vs-rest {row['movers_auroc_vs_rest']:.3f}")
    return row


#: Household sizes the probe sets for everyone: alone, a couple, a family, a care home.
PROBE_SIZES = (1, 2, 4, 20)


def household_probe(label: str, model: object, frame: pl.DataFrame) -> dict[int, float]:
    """What the model learnt about households: everyone's mean predicted risk with household_size set to each
    of ``PROBE_SIZES`` (lives_alone to match), all else as it is. A model trained on the snapshot saw future
    care-home residents (outcome events) in care-home-sized households at T, so it can learn that size = risk."""
    out = {}
    for size in PROBE_SIZES:
        probe = frame.with_columns(pl.lit(size, dtype=frame.schema["household_size"]).alias("household_size"),
                                   pl.lit(size == 1).alias("lives_alone"))
        out[size] = float(np.mean(model.predict_proba(probe)))  # type: ignore[attr-defined]
    print(f"    household probe ({label}): mean risk if everyone lived in a household of "
          + ", ".join(f"{k}: {v:.4f}" for k, v in out.items()))
    return out


def care_home_sized(label: str, frame: pl.DataFrame, target: str) -> None:
    """People of the test cohort in a household of 10+ (a care home) at the test date, and their outcome rate."""
    big = frame.filter(pl.col("household_size") >= 10)
    rate = big[target].mean() if big.height else float("nan")
    print(f"  {label}: {big.height} people of the test cohort in a household of 10+ at T; {target} in the next "
          f"12 months {rate:.1%} (all: {frame[target].mean():.1%})")


def test_frame(clean: Path, test_date: date, truth: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """Features at the test date from ``clean`` joined to labels and truth, for the list cohort (as training does)."""
    from expectations.cohort import cohort_at, in_cohort
    from features.build import build_features
    from models.labels import build_labels

    cohort = in_cohort(cohort_at(clean, test_date, settings.cohort)).select("person_id")
    return (build_features(clean, test_date).join(build_labels(clean, test_date), on="person_id", how="inner")
            .join(truth, on="person_id", how="inner").join(cohort, on="person_id", how="semi").sort("person_id"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", type=Path, required=True, help="generated delivery (with _truth/)")
    parser.add_argument("--clean", type=Path, required=True, help="its ingested clean directory (read only)")
    parser.add_argument("--work", type=Path, required=True, help="where the two arms' link directories go")
    parser.add_argument("--target", default="crisis")
    parser.add_argument("--sample", type=int, default=None)
    args = parser.parse_args()
    if not (args.clean / ADDRESS_FILE).exists():
        raise SystemExit(f"{args.clean} has no {ADDRESS_FILE}: nothing to compare (generate with addresses)")

    from models.registry import load_model
    from models.train import train_and_register

    arms = {"at T": arm_directory(args.clean, args.work / "at_t", with_addresses=True),
            "snapshot": arm_directory(args.clean, args.work / "snapshot", with_addresses=False)}
    settings = Settings(home=args.work / "unused-home")
    key = settings.pseudonymisation_key()
    test_date, truth = truth_for(args.raw, arms["at T"], key, args.target)
    index_date = test_date + timedelta(days=365)
    movers = care_home_movers(args.raw, key, test_date)
    honest = test_frame(arms["at T"], test_date, truth, settings)
    leaky = test_frame(arms["snapshot"], test_date, truth, settings)
    print(f"delivery {args.raw}, target {args.target}, test date {test_date}; test cohort {honest.height:,} "
          f"(snapshot features: {leaky.height:,}); care-home moves in the outcome window: {movers.height} people")
    care_home_sized("features at T", honest, args.target)
    care_home_sized("snapshot features", leaky, args.target)
    rows = []
    probes = {}
    for arm, clean in arms.items():
        with tempfile.TemporaryDirectory() as home:
            arm_settings = Settings(home=Path(home))
            started = time.perf_counter()
            result = train_and_register(clean, args.target, index_date, arm_settings, sample=args.sample,
                                        test_date=test_date)
            seconds = time.perf_counter() - started
            model = load_model(args.target, arm_settings, result.alias)
            print(f"\n{arm}: chosen {result.chosen} (validation AUROC {result.metrics.get('validation_auroc', 0):.4f}),"
                  f" logged test AUROC {result.metrics['test_auroc']:.4f}, {result.alias} on the first run "
                  f"({'; '.join(result.gate_reasons) or 'gate passed'}); trained in {seconds:.0f} s")
            probes[arm] = household_probe(arm, model, honest)
            if arm == "at T":
                rows.append(evaluation("at T model, features at T", model, honest, args.target, movers))
            else:
                rows.append(evaluation("snapshot model, snapshot features (apparent)", model, leaky, args.target,
                                       movers))
                rows.append(evaluation("snapshot model, features at T (in use)", model, honest, args.target,
                                       movers))
    print("\n| | AUROC (95% CI) | gap to oracle | slope | O/E overall | O/E 18-44 / 45-64 / 65-74 / 75-84 / 85+ "
          "| care-home movers: mean risk (rest) | movers in top 5% / 20% |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        bands = " / ".join(f"{r['oe'][b][0]:.2f}" if b in r["oe"] else "-"
                           for b in ("18-44", "45-64", "65-74", "75-84", "85+"))
        print(f"| {r['label']} | {r['auroc']:.4f} ({r['ci'][0]:.4f}-{r['ci'][1]:.4f}) | {r['oracle'] - r['auroc']:+.4f} "
              f"| {r['slope']:.3f} | {r['oe']['all'][0]:.3f} | {bands} | {r['movers_mean_p']:.3f} "
              f"({r['others_mean_p']:.3f}) | {r['movers_top5']} / {r['movers_top20']} of {r['movers']} |")
    print("\n| model | " + " | ".join(f"mean risk, everyone in a household of {k}" for k in PROBE_SIZES) + " |")
    print("|---|" + "---|" * len(PROBE_SIZES))
    for arm, probe in probes.items():
        print(f"| {arm} | " + " | ".join(f"{v:.4f}" for v in probe.values()) + " |")


if __name__ == "__main__":
    main()
