"""``upstream schedule``: serve the weekly flow on a cron schedule with ``flow.serve`` (no cloud account)."""

from __future__ import annotations

import argparse

from pipelines.cli_run import add_weekly_arguments
from upstream.errors import UpstreamError


def configure(parser: argparse.ArgumentParser) -> None:
    add_weekly_arguments(parser)
    parser.add_argument("--cron", default="0 6 * * 1", help='cron schedule (default "0 6 * * 1": Mondays 06:00)')
    parser.add_argument("--timezone", default="Europe/London", help="time zone of the cron schedule")
    parser.add_argument("--name", default="upstream-weekly", help="deployment name")


def run(args: argparse.Namespace) -> int:
    from pipelines.prefect_server import prepare_environment

    prepare_environment()
    if not args.raw.is_dir():
        raise UpstreamError(f"{args.raw}: delivery directory not found")
    from prefect.schedules import Cron

    try:
        schedule = Cron(args.cron, timezone=args.timezone)
    except ValueError as exc:
        raise UpstreamError(f"--cron/--timezone: {exc}") from exc

    from pipelines.flows import weekly
    from pipelines.prefect_server import prefect_api
    from upstream.settings import get_settings

    settings = get_settings()
    with prefect_api(with_ui=True) as api_url:
        print(f"Prefect UI: {api_url.removesuffix('/api') if api_url else '(ephemeral)'}")
        print(f"serving deployment 'weekly/{args.name}' on {args.cron!r} ({args.timezone}); Ctrl+C to stop")
        weekly.serve(
            name=args.name,
            schedule=schedule,
            parameters={
                "raw_dir": str(args.raw.resolve()),
                "train": args.train,
                "dask_address": args.dask_address,
                "home": str(settings.home),
                "train_sample": args.train_sample,
            },
        )
    return 0
