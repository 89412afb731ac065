"""API documentation (Swagger UI, ReDoc, the OpenAPI schema): behind a key, with no CDN.

Why behind a key: DESIGN §7 says only ``/health`` answers without one, and the schema maps every route.
Why no CDN: FastAPI's default pages load Swagger UI from a CDN, which NHS and council networks often
block (the page is blank) and which would tell a third party who reads our docs. The assets come from
the ``fastapi-offline`` package (a maintained bundle of the Swagger UI and ReDoc files), served from
``/static-offline-docs``; the pages themselves are FastAPI's own HTML helpers pointed at those files.
In a browser the web sign-in session authenticates the pages and the schema fetch.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from serving.deps import require_principal

DOCS_ASSETS = "/static-offline-docs"


def _assets_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def add_docs_routes(app: FastAPI, public: bool) -> None:
    """``/openapi.json``, ``/docs`` and ``/redoc``; each needs a key unless ``public``."""
    guard = [] if public else [Depends(require_principal)]
    app.mount(DOCS_ASSETS, StaticFiles(directory=_assets_dir()), name="offline-docs")

    @app.get("/openapi.json", include_in_schema=False, dependencies=guard)
    def openapi_schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=guard)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False, dependencies=guard)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )
