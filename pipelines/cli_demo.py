"""``upstream demo``: synthetic delivery -> two weekly runs (with training) -> the API.

Two consecutive weeks (index date D-7, then D = the delivery's extract date) so the lists' "change since
last week" and "new this week" mean something on first sight.
"""

from __future__ import annotations

import argparse
from datetime import date, timedelta
from pathlib import Path
from typing import Any

DEFAULT_RESIDENTS = 280_000
QUICK_RESIDENTS = 20_000


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RESIDENTS:,} residents instead of 280k")
    parser.add_argument("--residents", type=int, default=None, help="population size (overrides --quick)")
    parser.add_argument("--seed", type=int, default=42, help="generator seed")
    parser.add_argument("--no-serve", action="store_true", help="stop after the weekly runs (do not start the API)")
    parser.add_argument(
        "--train-sample", type=int, default=None, help="cap people per training date (faster on large demos)"
    )


def residents_for(args: argparse.Namespace) -> int:
    if args.residents is not None:
        if args.residents < 100:
            from upstream.errors import UpstreamError

            raise UpstreamError("--residents must be at least 100")
        return args.residents
    return QUICK_RESIDENTS if args.quick else DEFAULT_RESIDENTS


def synthesise(raw_dir: Path, residents: int, seed: int) -> date:
    """Generate the delivery (unless this exact one is already there) and return its extract date."""
    import json

    from pipelines.weeks import delivery_extract_date
    from synthetic import DEFAULT_YEARS

    marker = raw_dir / "_demo.json"
    # Years too: an older, shorter demo delivery cannot give training dates with the features' full history.
    wanted = {"residents": residents, "seed": seed, "years": DEFAULT_YEARS}
    if not (marker.exists() and json.loads(marker.read_text()) == wanted):
        print(f"generating a synthetic delivery of {residents:,} residents in {raw_dir} ...", flush=True)
        from synthetic import default_workers

        _generator()(raw_dir, residents=residents, seed=seed, workers=default_workers())
        marker.write_text(json.dumps(wanted))
    return delivery_extract_date(raw_dir) or date.today()


def _generator():
    """Imported late: the generator is a separate package (and heavy)."""
    from synthetic.generate import generate_delivery

    return generate_delivery


def demo_keys(settings: Any, localities: list[str]) -> dict[str, str]:
    """An admin key and a key for the first locality, so the demo's web page can be opened at once."""
    from serving.keys import create_key
    from upstream.store import get_engine

    engine = get_engine(settings.db_url)
    keys = {"admin": create_key(engine, "admin", [], "demo admin")}
    if localities:
        keys[f"locality ({localities[0]})"] = create_key(engine, "locality", [localities[0]], "demo locality")
    return keys


def run(args: argparse.Namespace) -> int:
    from pipelines.prefect_server import prepare_environment

    prepare_environment()
    from pipelines.cli_run import run_weekly
    from pipelines.prefect_server import prefect_api
    from upstream.settings import get_settings

    settings = get_settings()
    raw_dir = settings.home / "demo" / "raw"
    extract = synthesise(raw_dir, residents_for(args), args.seed)
    weeks = [extract - timedelta(days=7), extract]
    with prefect_api(with_ui=not args.no_serve) as api_url:
        results = []
        for number, (index_date, train) in enumerate(zip(weeks, ("always", "auto"), strict=True), start=1):
            print(f"weekly run {number}/2: index date {index_date} (train={train}) ...", flush=True)
            results.append(run_weekly(raw_dir, index_date, train, settings.home, train_sample=args.train_sample))
        latest = results[-1]
        print(f"\npublished {latest['week']}: {latest['n_scored']:,} residents scored")
        for warning in latest.get("warnings") or []:
            print(f"warning: {warning}")
        print(f"lists (CSV, Excel): {settings.home / 'lists' / latest['week']}")
        prefect_ui = api_url.removesuffix("/api") if api_url else "(temporary; run `prefect server start` to browse)"
        if args.no_serve:
            print(f"Prefect UI:  {prefect_ui}")
            print(f"MLflow UI:   mlflow ui --backend-store-uri {settings.tracking_uri} --port 5000")
            return 0
        from pipelines.score_history import published_localities
        from upstream.store import get_engine

        keys = demo_keys(settings, published_localities(get_engine(settings.db_url), latest["week"]))
        host, port = settings.serving.host, settings.serving.port
        print(f"\nWeb page:    http://{host}:{port}/ui   (sign in with a key below)")
        print(f"Analysts:    http://{host}:{port}/ui/runs and /ui/monitoring")
        print(f"API docs:    http://{host}:{port}/docs")
        print(f"Prefect UI:  {prefect_ui}")
        print(f"MLflow UI:   mlflow ui --backend-store-uri {settings.tracking_uri} --port 5000")
        for role, key in keys.items():
            print(f"Key ({role}): {key}")
        print("Press Ctrl+C to stop.", flush=True)
        import uvicorn

        # Quiet: the addresses are printed above; -v shows uvicorn's start-up lines too.
        log_level = "info" if getattr(args, "verbose", False) else "warning"
        uvicorn.run("serving.app:create_app", factory=True, host=host, port=port, log_level=log_level)
    return 0
