"""``upstream synth``: write a synthetic linked delivery with known ground truth and print a summary."""

from __future__ import annotations

import argparse
from pathlib import Path

from synthetic import DEFAULT_YEARS, default_workers
from upstream.cli import iso_date
from upstream.errors import UpstreamError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--residents", type=int, required=True, help="number of residents")
    parser.add_argument("--seed", type=int, required=True, help="random seed (same seed, same bytes)")
    parser.add_argument("--out", type=Path, required=True, help="delivery folder to write")
    parser.add_argument("--years", type=int, default=DEFAULT_YEARS,
                        help=f"years of history (default {DEFAULT_YEARS}: enough for sound training dates)")
    parser.add_argument("--defect-rate", type=float, default=0.0, help="share of rows with an injected defect")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet", dest="fmt")
    parser.add_argument("--world", choices=("default", "alt"), default="default",
                        help="ground-truth world: which risk drivers dominate")
    parser.add_argument("--end-date", type=iso_date, default=None, help="extract date (default 2026-11-22)")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="processes simulating chunks in parallel (same output whatever the number; "
                        "default: this machine's cores, at most 4)")
    parser.add_argument("--programme-effect", type=float, default=None, metavar="E",
                        help="simulate a past programme whose true effect is E (0 <= E < 1: relative reduction of "
                        "the hazards of emergency admission and care escalation for 12 months after acceptance); "
                        "writes programme_actions.csv and _truth/programme.json")
    parser.add_argument("--no-addresses", action="store_false", dest="addresses",
                        help="do not write the optional address history (people still move; the residents file "
                        "holds their extract-time address, as from a council without address history)")


def run(args: argparse.Namespace) -> int:
    from synthetic.generate import DEFAULT_END_DATE, generate_delivery

    if args.residents < 1 or args.residents > 60_000_000:
        raise UpstreamError("--residents must be between 1 and 60,000,000")
    summary = generate_delivery(
        args.out, residents=args.residents, seed=args.seed, years=args.years, defect_rate=args.defect_rate,
        fmt=args.fmt, end_date=args.end_date or DEFAULT_END_DATE, world=args.world, workers=args.workers,
        programme_effect=args.programme_effect, addresses=args.addresses,
    )
    print(f"synthetic delivery: {summary.residents:,} residents, world={args.world}, seed={args.seed} "
          f"-> {summary.out_dir}")
    for name, rows in summary.rows.items():
        print(f"  {name:<20} {rows:>10,} rows")
    kinds = ", ".join(f"{k} {v}" for k, v in summary.defects_by_kind.items()) or "none"
    print(f"  defects injected: {summary.defects:,} ({kinds})")
    for t in summary.truth_paths:
        prev = summary.prevalence[t]
        auc = summary.oracle_auroc[t]
        print(f"  12 months from {t}: " + ", ".join(
            f"{o} {prev[o]:.1%} (oracle AUROC {auc[o]:.3f})" for o in prev))
    if "programme_n_treated" in summary.extra:
        print(f"  programme: {int(summary.extra['programme_n_treated']):,} accepted; true effect on crisis in 12 "
              f"months: risk difference {summary.extra['programme_true_rd']:+.4f}, "
              f"risk ratio {summary.extra['programme_true_rr']:.4f}")
    print(f"  elapsed {summary.elapsed_s:.1f} s")
    return 0
