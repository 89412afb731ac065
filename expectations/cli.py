"""``upstream ingest``: validate, pseudonymise and quarantine one raw delivery."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import date
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", type=Path, required=True, help="raw delivery directory (one file per source)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (written atomically)")
    parser.add_argument("--as-of", type=date.fromisoformat, default=None,
                        help="'today' for the date checks (default: extract_date in _delivery.json, else today)")
    parser.add_argument("--previous", type=Path, default=None,
                        help="validation_summary.json of the previous delivery (row-count and null-rate drift)")


def run(args: argparse.Namespace) -> int:
    # GX logs every internal registration at INFO; the user wants our one-line progress, not that.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    from expectations.ingest import ingest_delivery
    from upstream.errors import UpstreamError
    from upstream.settings import get_settings

    previous = None
    if args.previous is not None:
        try:
            previous = json.loads(Path(args.previous).read_text())
        except (OSError, ValueError) as exc:
            raise UpstreamError(f"{args.previous}: cannot read the previous validation summary ({exc})") from None
    summary = ingest_delivery(args.raw, args.out, get_settings(), as_of=args.as_of, previous_summary=previous)
    for source, entry in summary.items():
        warnings = [c["name"] + (f"({c['column']})" if c.get("column") else "")
                    for c in entry["checks"] if c["level"] == "warn"]
        print(f"{source}: {entry['rows_in']} in, {entry['rows_valid']} valid, {entry['rows_quarantined']} quarantined"
              + (f"; warnings: {', '.join(warnings)}" if warnings else ""))
    print(f"wrote {args.out}")
    return 0
