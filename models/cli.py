"""``upstream train``: train, evaluate, audit and register a model in MLflow."""

from __future__ import annotations

import argparse
from pathlib import Path

from upstream.cli import iso_date
from upstream.errors import UpstreamError
from upstream.targets import TARGETS


def _positive(value: str) -> int:
    number = int(value)
    if number < 100:
        raise argparse.ArgumentTypeError("--sample must be at least 100 people")
    return number


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=None, choices=list(TARGETS),
                        help="outcome to predict (default: settings.target, normally crisis)")
    parser.add_argument("--index-date", type=iso_date, required=True,
                        help="the date the model is for; training and test dates are picked before it")
    parser.add_argument("--clean", type=Path, default=None,
                        help="clean data directory written by ingest (default: the newest under UPSTREAM_HOME)")
    parser.add_argument("--sample", type=_positive, default=None, help="at most N people per training date")
    parser.add_argument("--test-date", type=iso_date, default=None,
                        help="override the test index date (default: latest fully observed Monday)")


def newest_clean_dir(home: Path) -> Path:
    """The most recently written clean directory under UPSTREAM_HOME (what the weekly flow last ingested)."""
    found = sorted(home.glob("**/clean/residents.parquet"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UpstreamError(f"no clean data under {home}: run `upstream ingest` and pass --clean DIR")
    return found[-1].parent


def run(args: argparse.Namespace) -> int:
    from models.train import train_and_register
    from upstream.settings import get_settings

    settings = get_settings()
    target = args.target or settings.target
    clean = args.clean or newest_clean_dir(settings.home)
    result = train_and_register(clean, target, args.index_date, settings, sample=args.sample,
                                test_date=args.test_date)
    m = result.metrics
    print(f"upstream-{target} version {result.version} ({result.chosen}) -> alias {result.alias}")
    print(f"  train dates {', '.join(map(str, result.train_dates))} ({result.n_train} rows; model chosen on the "
          f"last of them, fitted again on all); "
          f"test date {result.test_date} ({result.n_test} people)")
    print(f"  test AUROC {m['test_auroc']:.3f} [{m['test_auroc_ci_low']:.3f}, {m['test_auroc_ci_high']:.3f}]"
          f"  AUPRC {m['test_auprc']:.3f}  calibration slope {m['test_calibration_slope']:.2f}"
          f"  PPV@20% {m['test_ppv_top20']:.3f}")
    for name, b in result.baselines.items():
        print(f"  baseline {name}: AUROC {b['auroc']:.3f}")
    for reason in result.gate_reasons:
        print(f"  gate: {reason}")
    print(f"  MLflow run {result.run_id}; {result.seconds:.0f} s")
    return 0
