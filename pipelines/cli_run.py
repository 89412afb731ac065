"""``upstream run``: the weekly flow, once (ingest, features, train if needed, score, lists)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path

from upstream.cli import iso_date
from upstream.errors import UpstreamError


def add_weekly_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``run`` and ``schedule``."""
    parser.add_argument("--raw", required=True, type=Path, help="delivery directory (raw extracts)")
    parser.add_argument(
        "--dask-address",
        default=None,
        help="address of an existing Dask scheduler (e.g. tcp://10.0.0.5:8786): run ingest (per source chunk), "
        "features, scoring and lists (per locality) and outcome follow-up as tasks there; UPSTREAM_HOME must be "
        "on storage the workers share (default: UPSTREAM_DASK_ADDRESS)",
    )
    parser.add_argument(
        "--train",
        choices=("auto", "always", "never"),
        default="auto",
        help="auto: train only when there is no champion model yet (default)",
    )
    parser.add_argument(
        "--train-sample", type=int, default=None, help="cap people per training date (large populations)"
    )


def run_weekly(
    raw_dir: Path,
    index_date: date | None,
    train: str,
    home: Path,
    train_sample: int | None = None,
    dask_address: str | None = None,
) -> dict:
    """Run the weekly flow once; a failed run becomes an UpstreamError (a message, not a traceback).

    The flow's own log says which step failed; the last published week is still the one served.
    """
    from pipelines.flows import weekly

    state = weekly(
        raw_dir=str(raw_dir),
        index_date=index_date,
        train=train,
        dask_address=dask_address,
        home=str(home),
        train_sample=train_sample,
        return_state=True,
    )
    if not state.is_completed():
        try:
            state.result()
        except UpstreamError:
            raise
        except Exception as exc:
            raise UpstreamError(
                f"the weekly run for {index_date or 'the extract date'} failed ({type(exc).__name__}: {exc});"
                " the last published week is unchanged"
            ) from exc
    return state.result()


#: Exit code of a failed run (the CLI's code for an error the user can act on).
EXIT_FAILED = 2


def abort_run(
    home: Path, db_url: str | None, command: str = "upstream run", cleanup_seconds: float = 20.0
) -> Callable[[str], None]:
    """What to do when the Prefect API is lost mid-run: one line on stderr, mark the run failed, exit 2.

    ``os._exit``, not an exception: the main thread is typically inside Prefect's client, retrying the
    dead API with back-off, and the interpreter's exit would then wait on Prefect's own exit hooks doing
    the same. Clean-up is bounded: if it cannot finish in ``cleanup_seconds`` the next run's start-up
    reaps the run (this process holds the home's run lock, so every ``running`` run is ours). ``db_url``
    None: the database is not the home's own (``run_guard.database_in_home``), so nothing is reaped.
    """

    def lost(reason: str) -> None:
        print(
            f"{command}: error: {reason}; the weekly run was stopped and the last published week is unchanged",
            file=sys.stderr,
            flush=True,
        )

        def reap() -> None:
            from pipelines.score_history import reap_abandoned_runs
            from upstream.store import get_engine

            with contextlib.suppress(Exception):  # if not, the next run's start-up does it
                reap_abandoned_runs(get_engine(db_url))

        if db_url is not None:
            cleaner = threading.Thread(target=reap, name="reap-on-exit", daemon=True)
            cleaner.start()
            cleaner.join(cleanup_seconds)
        sys.stdout.flush()
        os._exit(EXIT_FAILED)

    return lost


def exit_within(seconds: float, code: int = EXIT_FAILED) -> None:
    """Guarantee a failed run's process ends: Prefect's exit hooks can block on an unreachable API."""
    timer = threading.Timer(seconds, lambda: (sys.stderr.flush(), os._exit(code)))
    timer.daemon = True
    timer.start()


def configure(parser: argparse.ArgumentParser) -> None:
    add_weekly_arguments(parser)
    parser.add_argument(
        "--index-date", type=iso_date, default=None, help="scoring date (default: the delivery's extract date, else today)"
    )


def run(args: argparse.Namespace) -> int:
    from pipelines.prefect_server import prepare_environment

    prepare_environment()
    if not args.raw.is_dir():
        raise UpstreamError(f"{args.raw}: delivery directory not found")
    from pipelines.prefect_server import launch_temporary_api, watched_prefect_api
    from pipelines.run_guard import database_in_home
    from upstream.settings import get_settings

    settings = get_settings()
    server_log = settings.home / "logs" / "prefect-server.log"  # named in the failure line if the server dies
    launch_temporary_api(server_log)  # it starts on the other core while the flows are imported
    from expectations.ingest_pool import start_fork_server

    start_fork_server(settings, args.raw)  # the ingest workers' GX import, also while the flows are imported
    import pipelines.flows  # noqa: F401  (imported now, while the server starts; run_weekly uses it)

    own_db = settings.db_url if database_in_home(settings) else None
    on_lost = abort_run(settings.home, own_db)
    with watched_prefect_api(on_lost, grace=settings.prefect_api_grace_seconds, server_log=server_log) as api_url:
        try:
            result = run_weekly(
                raw_dir=args.raw.resolve(),
                index_date=args.index_date,
                train=args.train,
                home=settings.home,
                train_sample=args.train_sample,
                dask_address=args.dask_address,
            )
        except UpstreamError:
            exit_within(settings.prefect_api_grace_seconds)
            raise
    print(
        f"published {result['week']}: {result['n_scored']} residents scored; lists in {settings.home / 'lists' / result['week']}"
    )
    print("steps: " + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in result["timings"].items()))
    for warning in result.get("warnings") or []:
        print(f"warning: {warning}")  # the run ended "Completed with warnings"; alerts were sent if configured
    if api_url is None:
        print(
            "Prefect: runs are recorded in the local Prefect database; `prefect server start` to browse them in the UI"
        )
    else:
        print(f"Prefect UI: {api_url.removesuffix('/api')}")
    return 0
