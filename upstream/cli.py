"""The ``upstream`` command line.

Each subcommand lives in the package that owns it, as a module with ``configure(parser)``
(cheap: no heavy imports) and ``run(args) -> int``. This file only wires them together, so
``upstream --help`` is fast and adding a command never touches another package.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from datetime import date

from upstream.errors import UpstreamError

#: command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synthetic.cli", "generate a synthetic linked delivery with known ground truth"),
    "ingest": ("expectations.cli", "validate, pseudonymise and quarantine one raw delivery"),
    "features": ("features.cli", "build the point-in-time feature table for an index date"),
    "docs": ("features.docs_cli", "regenerate the data dictionary from the feature registry"),
    "train": ("models.cli", "train, evaluate, audit and register a model in MLflow"),
    "run": ("pipelines.cli_run", "run the weekly flow once"),
    "schedule": ("pipelines.cli_schedule", "serve the weekly flow on a cron schedule"),
    "demo": ("pipelines.cli_demo", "synthetic data, then the weekly flow, then the API"),
    "serve": ("serving.cli_serve", "start the API and the locality web pages"),
    "keys": ("serving.cli_keys", "create, list and revoke API keys"),
    "retention": ("upstream.cli_retention", "delete audit rows, sessions and weeks past their retention"),
    "actions": ("loop.cli_actions", "import what teams did for listed people (all rows or none)"),
    "evaluate": ("loop.cli_evaluate", "evaluate the effect of offers on crisis, with a declared method"),
}


def iso_date(text: str) -> date:
    """argparse type for YYYY-MM-DD options: a bad date is a usage error naming the value, not a traceback."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from exc


#: third-party loggers held at WARNING unless --verbose
NOISY_LOGGERS = ("httpx", "httpcore", "great_expectations")


def no_phone_home() -> None:
    """There is no internet here or in most council networks: no library may phone home (the CLI and the
    benches call this before Prefect, MLflow or GX start)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upstream", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show every log line (Prefect, MLflow, GX) at debug level"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)  # a missing command is a broken install: say so
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.configure(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    no_phone_home()
    args = build_parser().parse_args(argv)
    from upstream.console import configure_console

    # Quiet by default: one line per step, our warnings once, errors (issue 16); -v shows everything.
    configure_console(args.verbose)
    if not args.verbose:
        # Prefect's API client logs every HTTP request at INFO: a wall of noise around our own INFO lines.
        for noisy in NOISY_LOGGERS:
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args._run(args) or 0)
    except UpstreamError as exc:
        print(f"upstream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
