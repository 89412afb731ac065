"""``upstream retention``: enforce the retention settings now (see upstream.retention)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Deletes audit rows older than retention.audit_days, web sessions expired for retention.session_days, "
        "and scored weeks older than retention.score_weeks (UPSTREAM_RETENTION__... or the TOML file)."
    )


def run(args: argparse.Namespace) -> int:
    from upstream.retention import enforce_retention
    from upstream.settings import get_settings

    removed = enforce_retention(get_settings())
    print("retention: removed " + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in removed.items()))
    return 0
