"""``upstream actions import --file F.csv``: bulk-import a case-management export (all rows or none)."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="actions_command", required=True, metavar="SUBCOMMAND")
    imp = sub.add_parser("import", help="import actions from a CSV (nhs_number, week, action, offer, reason)")
    imp.add_argument("--file", type=Path, required=True, help="CSV export from the case-management system")


def run(args: argparse.Namespace) -> int:
    from loop.actions import import_actions
    from upstream.settings import get_settings

    result = import_actions(args.file, get_settings())
    print(f"actions import: {result.rows_in:,} rows read, {result.rows_valid:,} valid, "
          f"{result.rows_new:,} new (already recorded: {result.rows_valid - result.rows_new:,}) from {args.file}")
    return 0
