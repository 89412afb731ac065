"""``upstream serve``: run the API and locality pages under uvicorn."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (default from settings: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default from settings: 8000)")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from serving.app import create_app
    from upstream.settings import get_settings

    settings = get_settings()
    app = create_app(settings)
    # access_log=False: uvicorn's access log prints full URLs, which can hold person ids. Our own
    # middleware logs the route template instead.
    uvicorn.run(
        app,
        host=args.host or settings.serving.host,
        port=args.port or settings.serving.port,
        access_log=False,
        log_level="info",
    )
    return 0
