"""``upstream evaluate [--from WEEK --to WEEK]``: the effect of accepted offers on crisis (loop/evaluate.py)."""

from __future__ import annotations

import argparse
import re

_WEEK = re.compile(r"^\d{4}-W\d{2}$")


def _week(text: str) -> str:
    if not _WEEK.match(text):
        raise argparse.ArgumentTypeError(f"not an ISO week (YYYY-Www): {text!r}")
    return text


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="week_from", type=_week, default=None, help="first offer week (YYYY-Www)")
    parser.add_argument("--to", dest="week_to", type=_week, default=None, help="last offer week (YYYY-Www)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (same seed, same intervals)")
    parser.add_argument("--bootstrap", type=int, default=400, help="bootstrap replicates for the 95%% CIs")


def run(args: argparse.Namespace) -> int:
    from loop.evaluate import evaluate, write_report
    from upstream.settings import get_settings

    settings = get_settings()
    report = evaluate(settings, args.week_from, args.week_to, seed=args.seed, n_boot=args.bootstrap)
    out = write_report(report, settings)
    c = report["crisis_12m"]
    rr, rd = c["risk_ratio"], c["risk_difference"]
    print(f"evaluation {report['period']['from']}..{report['period']['to']} ({report['method']['name']}): "
          f"crisis within 12 months, accepted {c['n_treated']} vs comparison {c['n_comparison']}")
    print(f"  risk ratio {rr['estimate']:.3f} (95% CI {rr['ci_low']:.3f} to {rr['ci_high']:.3f}); "
          f"risk difference {rd['estimate']:+.4f} (95% CI {rd['ci_low']:+.4f} to {rd['ci_high']:+.4f})")
    p = report["prism_check"]["emergency_admission_12m"]["risk_ratio"]
    print(f"  PRISM check, emergency admission listed vs unlisted: risk ratio {p['estimate']:.3f} "
          f"(95% CI {p['ci_low']:.3f} to {p['ci_high']:.3f})")
    print(f"  report: {out / 'evaluation.json'} and {out / 'evaluation.md'}")
    return 0
