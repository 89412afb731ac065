"""``upstream docs``: regenerate the Markdown data dictionary from the feature registry."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None, help="output file (default docs/data_dictionary.md)")


def run(args: argparse.Namespace) -> int:
    from features.docs import DEFAULT_PATH, write_data_dictionary
    from upstream.list_docs import write_lists_doc

    path = write_data_dictionary(args.out or DEFAULT_PATH)
    print(f"docs: data dictionary written to {path}")
    if args.out is None:
        print(f"docs: list cohort, sections, row and offers written to {write_lists_doc()}")
    return 0
