"""The Upstream API: weekly rising-risk lists, resident scores with reasons, the champion's model card.

The routes are module-level ``APIRouter``s that name what they need through ``serving.deps``
(``CurrentPrincipal``, ``SettingsDep``, ``EngineDep``); ``create_app`` assembles them with the middleware
and error handlers. Nothing connects or reads at import or construction; the database engine is opened
on the first request. Every person-level route checks locality scope, writes an audit row, and never
logs a person id (the access log records route templates, not paths).
"""


import logging
import re
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from expectations.contract import LOCALITY_NAME_RE
from serving import queries
from serving.actions_api import actions_routes
from serving.audit import AuditUnavailable, is_person_level, recent_audit_rows, record_access, subject_of_refusal
from serving.deps import CurrentPrincipal, EngineDep, LocalityPath, SettingsDep, WeekQuery, engine_of
from serving.docs import add_docs_routes
from serving.exports import XLSX_MEDIA_TYPE, to_csv, to_xlsx
from serving.model_card import NoChampion, champion_summary
from serving.operations import operations_pages
from serving.reid import reid_lookup
from serving.schemas import (
    ERROR_TEXT,
    PERSON_ID_PATTERN,
    AuditRow,
    CohortFunnelOut,
    Health,
    ModelCardOut,
    ResidentScoreOut,
    RiskListOut,
    SummaryCell,
    SummaryOut,
    error_responses,
)
from serving.web import error_page, web_pages
from serving.web_actions import action_pages
from upstream.disclosure import RULE_TEXT, show_suppressed, suppress_count
from upstream.settings import Settings, get_settings
from upstream.targets import Target

access_log = logging.getLogger("upstream.serving.access")
error_log = logging.getLogger("upstream.serving.error")

LOCALITY_PATTERN = LOCALITY_NAME_RE  # the contract's: every locality ingest accepts can be served
HISTORY_WEEKS = 52

class ListFormat(StrEnum):
    json = "json"
    csv = "csv"
    xlsx = "xlsx"


class Section(StrEnum):
    new = "new"
    rising = "rising"
    top = "top"


OFFER_PATTERN = r"^[a-z0-9_]{1,60}$"
PRACTICE_PATTERN = r"^[A-Z0-9]{3,10}$"


class AccessLogMiddleware:
    """Logs method, route *template*, status and duration: the URL itself may carry a person id."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder = {"status": 500}
        response_started = {"value": False}

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                response_started["value"] = True
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"cache-control", b"no-store"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            # Never let the traceback reach the server log: driver errors embed SQL parameters (person ids).
            error_log.error("unhandled %s on %s", type(exc).__name__, _template(scope))
            if not response_started["value"]:
                await send_wrapper(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": b'{"detail":"internal error"}'})
        finally:
            access_log.info(
                "%s %s %s %.1fms",
                scope["method"],
                _template(scope),
                status_holder["status"],
                (time.perf_counter() - started) * 1000,
            )


def _template(scope) -> str:
    """The matched route's template (``/residents/{person_id}/score``), never the concrete path."""
    route = scope.get("route")
    return getattr(route, "path", None) or ("/static/*" if scope["path"].startswith("/static/") else "-")


def _safe_filename(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "_", text)


def _add_nhs_numbers(rows: list[dict], settings: Settings) -> None:
    mapping = reid_lookup(settings.reid_map_path)
    for row in rows:
        row["nhs_number"] = mapping.get(row["person_id"])


#: /health and the favicon: no key, no data.
meta_routes = APIRouter()
#: The weekly lists and the cohort behind them, per locality.
lists_routes = APIRouter()
#: One resident's score, band, reasons and history.
residents_routes = APIRouter()
#: The champion model's card.
models_routes = APIRouter()
#: Suppressed counts for everyone (no person-level data).
aggregates_routes = APIRouter()
#: The audit log (admin keys).
admin_routes = APIRouter()


@meta_routes.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    """Browsers ask for it on every page; answer with the SVG icon instead of a 401/404."""
    icon = Path(__file__).parent / "static" / "favicon.svg"
    return Response(icon.read_bytes(), media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


@meta_routes.get("/health", response_model=Health, tags=["meta"])
def health() -> Health:
    """Liveness only: no auth, no data."""
    return Health()


def _page_size_refused(limit: int, settings: Settings) -> RequestValidationError | None:
    """``limit`` above ``serving.max_list_limit``: refused like any invalid parameter (422, audited).

    Checked here rather than as ``Query(le=...)`` because the bound is a setting and the route is declared
    at import, before any settings exist."""
    most = settings.serving.max_list_limit
    if limit <= most:
        return None
    return RequestValidationError([{
        "type": "less_than_equal", "loc": ("query", "limit"), "msg": f"Input should be less than or equal to {most}",
        "input": str(limit), "ctx": {"le": most},
    }])


@lists_routes.get(
    "/localities/{locality}/rising-risk",
    response_model=RiskListOut,
    tags=["lists"],
    responses={
        200: {
            "description": "The week's list as JSON, CSV or Excel (by `format`)",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
        },
        **error_responses(401, 403, 404, 503),
    },
)
def rising_risk(
    locality: LocalityPath,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    engine: EngineDep,
    week: WeekQuery = None,
    limit: Annotated[
        int | None, Query(ge=1, description="Page size (at most serving.max_list_limit); omitted = the whole list")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    section: Annotated[Section | None, Query(description="new, rising or top")] = None,
    offer: Annotated[str | None, Query(pattern=OFFER_PATTERN, description="Only rows this offer fits")] = None,
    gp_practice: Annotated[str | None, Query(pattern=PRACTICE_PATTERN, description="ODS code")] = None,
    format: Annotated[ListFormat, Query()] = ListFormat.json,
) -> Any:
    """The published rising-risk list for a locality and week: the whole list unless a page is asked for.

    Every response says how many rows the list has (``total``, header ``X-Total-Count`` for files) and
    whether it is ``partial``, so no row is ever dropped silently."""
    from upstream.list_row import display_row

    if limit is not None and (too_big := _page_size_refused(limit, settings)) is not None:
        raise too_big
    route = "/localities/{locality}/rising-risk"

    def refuse(code: int, detail: str) -> HTTPException:
        record_access(engine, principal, route, code, locality=locality, week=week)
        return HTTPException(status_code=code, detail=detail)

    if not principal.may_see_locality(locality):
        raise refuse(403, "this key is not scoped to that locality")
    cut = queries.ListFilter(section=section.value if section else None, offer=offer, gp_practice=gp_practice)
    with engine.connect() as conn:
        pw = queries.published(conn, week)
        if pw is None:
            raise refuse(404, "no published list for that week")
        if not queries.locality_known(conn, pw.run_id, locality):
            raise refuse(404, "unknown locality")
        rows, total = queries.list_rows(conn, pw.run_id, pw.week, locality, limit, offset, cut)
        offers = queries.offer_places(conn, pw.run_id, pw.week, locality, settings)
    with_nhs = principal.reidentifies
    if with_nhs:
        _add_nhs_numbers(rows, settings)
    record_access(engine, principal, route, 200, locality=locality, week=pw.week, format=format.value)
    partial = offset > 0 or offset + len(rows) < total
    next_offset = offset + len(rows) if offset + len(rows) < total else None
    headers = {"X-Total-Count": str(total), "X-Partial": "true" if partial else "false"}
    stem = f"rising-risk_{_safe_filename(locality)}_{pw.week}"
    if format is ListFormat.csv:
        return Response(
            to_csv(rows, with_nhs),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{stem}.csv"', **headers},
        )
    if format is ListFormat.xlsx:
        return Response(
            to_xlsx(rows, with_nhs, f"{locality} {pw.week}", offers),
            media_type=XLSX_MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{stem}.xlsx"', **headers},
        )
    return JSONResponse(
        RiskListOut(
            locality=locality,
            week=pw.week,
            index_date=pw.index_date,
            model_name=pw.model_name,
            model_version=pw.model_version,
            total=total,
            offset=offset,
            count=len(rows),
            partial=partial,
            next_offset=next_offset,
            rows=[display_row(r, with_nhs) for r in rows],
            offers=offers,
        ).model_dump(mode="json"),
        headers=headers,
    )


@lists_routes.get(
    "/localities/{locality}/cohort",
    response_model=CohortFunnelOut,
    tags=["aggregates"],
    responses=error_responses(401, 403, 404),
)
def cohort_funnel(
    locality: LocalityPath,
    principal: CurrentPrincipal,
    engine: EngineDep,
    week: WeekQuery = None,
) -> CohortFunnelOut:
    """The list cohort for a locality and week: residents, then each exclusion in order (DESIGN §6),
    then the people who could be listed. Small-number suppressed (1-7 hidden, the rest rounded to 5)."""
    if not principal.may_see_locality(locality):
        raise HTTPException(status_code=403, detail="this key is not scoped to that locality")
    with engine.connect() as conn:
        pw = queries.published(conn, week)
        steps = queries.cohort_funnel(conn, pw.run_id, pw.week, locality) if pw else []
    if pw is None or not steps:
        raise HTTPException(status_code=404, detail="no published cohort for that locality and week")
    return CohortFunnelOut(
        locality=locality,
        week=pw.week,
        index_date=pw.index_date,
        rule=RULE_TEXT,
        steps=[{**s, "shown": show_suppressed(s["people"])} for s in steps],
    )


@residents_routes.get(
    "/residents/{person_id}/score",
    response_model=ResidentScoreOut,
    tags=["residents"],
    responses=error_responses(401, 404, 503),
)
def resident_score(
    person_id: Annotated[str, PathParam(pattern=PERSON_ID_PATTERN, description="Pseudonymised id")],
    principal: CurrentPrincipal,
    settings: SettingsDep,
    engine: EngineDep,
) -> ResidentScoreOut:
    """Latest published score, band and reasons, with the score history.

    Reasons are stored for the people on the week's lists; anyone else's are worked out on request from
    that week's features with the model version that scored it (the same text the list would show). When
    that is no longer possible (the week's features are gone), ``reasons`` is empty and ``reasons_note``
    says why: reasons are never guessed.

    A locality key gets the same 404 for a resident outside its localities as for one that
    does not exist, so the route cannot be used to probe who lives where. Scope holds across time:
    it sees only the weeks in which the resident lived in one of its localities (a resident who moved
    away shows their history up to the move; one who moved in, from the move on), and the NHS number
    only while the resident is still one of its own."""
    route = "/residents/{person_id}/score"
    with engine.connect() as conn:
        every_week = queries.resident_history(conn, person_id, queries.history_store(settings))
    history = [week for week in every_week if principal.may_see_locality(week["locality"])]
    if not history:
        record_access(engine, principal, route, 404, person_id=person_id)
        raise HTTPException(status_code=404, detail="resident not found")
    latest = history[0]
    current_resident = latest is every_week[0]
    nhs_number = (
        reid_lookup(settings.reid_map_path).get(person_id)
        if principal.reidentifies and current_resident
        else None
    )
    reasons, reasons_note = latest["reasons"], None
    if reasons is None:  # the week's run explained only its listed people: anyone else is explained now
        found = queries.reasons_on_demand(engine, settings, person_id, latest)
        reasons, reasons_note = found.reasons or [], found.note
    record_access(
        engine, principal, route, 200, person_id=person_id, locality=latest["locality"], week=latest["week"],
        format="json",
    )
    return ResidentScoreOut(
        person_id=person_id,
        nhs_number=nhs_number,
        locality=latest["locality"],
        week=latest["week"],
        index_date=latest["index_date"],
        score=latest["score"],
        band=latest["band"],
        in_long_term_care=bool(latest["in_long_term_care"]),
        reasons=reasons,
        reasons_note=reasons_note,
        history=[
            {"week": h["week"], "index_date": h["index_date"], "score": h["score"], "band": h["band"]}
            for h in history[:HISTORY_WEEKS]
        ],
    )


@models_routes.get("/models/current", response_model=ModelCardOut, tags=["models"], responses=error_responses(401, 404))
def current_model(
    principal: CurrentPrincipal,
    settings: SettingsDep,
    target: Annotated[Target | None, Query(description="Outcome; the configured default when omitted")] = None,
) -> ModelCardOut:
    """The champion model's card and metrics from the registry."""
    chosen = target.value if target else settings.target
    tracking = settings.tracking_uri
    if tracking.startswith("sqlite:///") and not Path(tracking.removeprefix("sqlite:///")).exists():
        raise HTTPException(status_code=404, detail=f"no champion model for {chosen}")
    try:
        return ModelCardOut(**champion_summary(chosen, settings))
    except NoChampion:
        raise HTTPException(status_code=404, detail=f"no champion model for {chosen}") from None


@aggregates_routes.get("/summary", response_model=SummaryOut, tags=["aggregates"], responses=error_responses(401, 404))
def summary(
    principal: CurrentPrincipal,
    engine: EngineDep,
    week: WeekQuery = None,
) -> SummaryOut:
    """Residents by locality and band, with small-number suppression (1-7 hidden, the rest rounded to 5)."""
    with engine.connect() as conn:
        pw = queries.published(conn, week)
        if pw is None:
            raise HTTPException(status_code=404, detail="no published scores for that week")
        counts = queries.band_counts(conn, pw.run_id)
    cells = [
        SummaryCell(locality=loc, band=band, residents=suppress_count(n))
        for loc, band, n in counts
        if principal.may_see_locality(loc)
    ]
    return SummaryOut(week=pw.week, index_date=pw.index_date, rule=RULE_TEXT, cells=cells)


@admin_routes.get("/audit", response_model=list[AuditRow], tags=["admin"], responses=error_responses(401, 403))
def audit(
    principal: CurrentPrincipal,
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditRow]:
    """The most recent audit rows (admin keys only). Reading them is itself audited: they name people."""
    if principal.role != "admin":
        record_access(engine, principal, "/audit", 403)
        raise HTTPException(status_code=403, detail="admin keys only")
    rows = recent_audit_rows(engine, limit)
    record_access(engine, principal, "/audit", 200)  # before the rows leave the server
    return [AuditRow(**row) for row in rows]


async def _validation_refused(request: Request, exc: RequestValidationError) -> Response:
    """A person-level request refused by validation is still a request for someone: audit it, then 422."""
    route = _template(request.scope)
    principal = getattr(request.state, "principal", None)
    if principal is not None and is_person_level(route):
        params = request.path_params
        given = params.get("person_id") or params.get("locality")
        key = request.app.state.settings.pseudonymisation_key()
        person_id, digest = subject_of_refusal(str(given), key) if given else (None, None)
        locality = params.get("locality")
        if locality is not None and not re.fullmatch(LOCALITY_PATTERN, str(locality)):
            locality = None
        try:
            await run_in_threadpool(
                record_access, engine_of(request), principal, route, 422,
                person_id=person_id, locality=locality, subject_hash=digest,
            )
        except AuditUnavailable:
            return JSONResponse({"detail": ERROR_TEXT[503]}, status_code=503, headers={"Retry-After": "30"})
    return await request_validation_exception_handler(request, exc)


async def _audit_unavailable(request: Request, exc: AuditUnavailable) -> Response:
    """Fail closed: no person-level data is served unaudited (503, or the web page's error)."""
    if request.url.path.startswith("/ui"):
        return error_page(getattr(request.state, "principal", None), 503, "Please try again in a minute.", request)
    return JSONResponse({"detail": ERROR_TEXT[503]}, status_code=503, headers={"Retry-After": "30"})


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API and web pages for ``settings`` (the process settings when None)."""
    settings = settings or get_settings()
    # uvicorn's access log prints full URLs, which carry person ids; however the app is launched
    # (``upstream serve``, the demo, a factory string), that logger must stay silent. Ours logs templates.
    logging.getLogger("uvicorn.access").disabled = True
    app = FastAPI(
        title="Upstream",
        version="0.1.0",
        description="Rising-risk lists, scores with reasons, and the champion model card. "
        "Every route except /health needs an API key (X-API-Key header, bearer token, or the web sign-in session).",
        # The docs and schema are served by serving.docs: behind a key, and without any CDN.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings  # what serving.deps.settings_of gives every route
    # A forged Host header gets 400 before any route (or redirect) can reflect it.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.serving.allowed_hosts)
    app.add_middleware(AccessLogMiddleware)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    add_docs_routes(app, public=settings.serving.public_docs)
    # The order is the OpenAPI schema's order; no two routers share a method and path.
    for router in (
        meta_routes,
        actions_routes,  # loop: actions teams record (serving/actions_api.py)
        lists_routes,
        residents_routes,
        models_routes,
        aggregates_routes,
        admin_routes,
        web_pages,  # the locality pages (serving/web.py)
        action_pages,  # per-row action forms (serving/web_actions.py)
        operations_pages,  # issue 16: analyst pages, runs and monitoring (serving/operations.py)
    ):
        app.include_router(router)
    app.add_exception_handler(RequestValidationError, _validation_refused)
    app.add_exception_handler(AuditUnavailable, _audit_unavailable)
    return app
