"""Locality web pages: log in with an API key, see the week's list, download CSV or Excel.

Server-rendered (Jinja2, autoescaped) in the NHS.UK frontend style with local CSS only: council
networks often block CDNs, and nothing about a resident should leave the page to a third party.
Signing in starts a server-side session (serving.sessions): the httpOnly, SameSite=Strict cookie holds
a random session id, never the key, and the key is re-checked on every request, so revoking a key ends
its web sessions at once. Every form post carries a CSRF token (serving.csrf).
"""


from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from serving import queries
from serving.audit import record_access
from serving.charts import bar_chart_svg
from serving.csrf import csrf_token_for, require_csrf, set_csrf_cookie
from serving.deps import COOKIE_NAME, EngineDep, LocalityPath, OptionalPrincipal, SettingsDep, WeekQuery
from serving.keys import Principal, authenticate
from serving.reid import reid_lookup
from serving.sessions import end_session, start_session
from upstream.disclosure import disclose_counts, show_suppressed

TREND_WEEKS = 8
HISTOGRAM_BINS = 10
#: Rows per web page: a team works through a page, not a 28,000-pixel scroll.
PAGE_SIZE = 100
#: Bands sort by severity, not alphabetically.
BAND_SEVERITY = {"very high": 4, "high": 3, "moderate": 2, "low": 1}

_HTML = {"text/html": {"schema": {"type": "string"}}}
_REDIRECT = {303: {"description": "Redirect (to the login page when not signed in)"}}


def _html_error(code: int, description: str) -> dict[int | str, dict[str, Any]]:
    return {code: {"description": description, "content": _HTML}}


@cache
def _templates():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(name: str, status_code: int = 200, request: Request | None = None, **context: Any) -> HTMLResponse:
    """A page; with ``request``, its forms get the CSRF token (and the browser its cookie if new)."""
    if request is not None:
        context.setdefault("csrf_token", csrf_token_for(request))
    html = _templates().get_template(name).render(**context)
    response = HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        },
    )
    if request is not None:
        set_csrf_cookie(response, request, request.app.state.settings.serving.cookies_secure)
    return response


def error_page(
    principal: Principal | None, code: int, message: str, request: Request | None = None
) -> HTMLResponse:
    titles = {401: "Sign in failed", 403: "Not available to you", 404: "Page not found", 503: "Try again shortly"}
    return render(
        "error.html", status_code=code, request=request, title=titles.get(code, "Error"), message=message,
        principal=principal,
    )


def _to_login() -> RedirectResponse:
    return RedirectResponse("/ui/login", status_code=303)


#: The locality pages under /ui: sign in and out, the localities a key may see, a locality's list.
web_pages = APIRouter(prefix="/ui", tags=["web pages"])


@web_pages.get("/login", response_class=HTMLResponse)
def login_form(request: Request, principal: OptionalPrincipal) -> HTMLResponse:
    """The sign-in form (API key)."""
    return render("login.html", request=request, principal=principal, error=None)


@web_pages.post(
    "/login",
    response_class=HTMLResponse,
    dependencies=[Depends(require_csrf)],
    responses={
        **_REDIRECT,
        **_html_error(401, "The key is unknown, malformed or revoked"),
        403: {"description": "Missing or wrong CSRF token (reload the form)", "model": None},
    },
)
def login(
    request: Request, settings: SettingsDep, engine: EngineDep, api_key: Annotated[str, Form(max_length=200)]
) -> Response:
    """Check the key; on success start a server-side session (the cookie holds its id) and go to the lists."""
    principal = authenticate(engine, api_key)
    if principal is None:
        return render(
            "login.html", status_code=401, request=request, principal=None, error="That key was not recognised."
        )
    hours = settings.serving.session_hours
    response = RedirectResponse("/ui", status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        start_session(engine, principal, hours),
        httponly=True,
        samesite="strict",
        secure=settings.serving.cookies_secure,
        path="/",
        max_age=int(hours * 3600),
    )
    return response


@web_pages.post(
    "/logout",
    response_class=HTMLResponse,
    dependencies=[Depends(require_csrf)],
    responses={**_REDIRECT, 403: {"description": "Missing or wrong CSRF token", "model": None}},
)
def logout(request: Request, engine: EngineDep) -> Response:
    """End the session on the server (a kept copy of the cookie stops working) and forget the cookie."""
    end_session(engine, request.cookies.get(COOKIE_NAME))
    response = _to_login()
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


@web_pages.get("", response_class=HTMLResponse, responses=_REDIRECT)
def home(request: Request, principal: OptionalPrincipal, engine: EngineDep) -> Response:
    """The localities this key may see (straight to the list when there is only one)."""
    if principal is None:
        return _to_login()
    with engine.connect() as conn:
        pw = queries.published(conn)
        names = queries.localities(conn, pw.run_id) if pw else []
    visible = [n for n in names if principal.may_see_locality(n)]
    if len(visible) == 1:
        return RedirectResponse(f"/ui/localities/{quote(visible[0])}", status_code=303)
    return render(
        "home.html", request=request, principal=principal, localities=visible, week=pw.week if pw else None
    )


@web_pages.get(
    "/localities/{locality}",
    response_class=HTMLResponse,
    responses={
        **_REDIRECT,
        **_html_error(403, "The key is not scoped to this locality"),
        **_html_error(404, "No published list for that locality or week"),
        **_html_error(503, "The audit log could not be written, so the list is not shown"),
    },
)
def locality_page(
    request: Request,
    principal: OptionalPrincipal,
    settings: SettingsDep,
    engine: EngineDep,
    locality: LocalityPath,
    week: WeekQuery = None,
    section: Annotated[str | None, Query(pattern=r"^(new|rising|top)?$")] = None,
    offer: Annotated[str | None, Query(pattern=r"^[a-z0-9_]{0,60}$")] = None,
    gp_practice: Annotated[str | None, Query(pattern=r"^[A-Z0-9]{0,10}$")] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """The week's rising-risk list for one locality: sections, filters, pages, charts and downloads."""
    from upstream.list_row import SECTIONS, change_text, display_row
    from upstream.offers import CAPACITY_RULE, load_catalogue

    if principal is None:
        return _to_login()
    route = "/ui/localities/{locality}"
    if not principal.may_see_locality(locality):
        record_access(engine, principal, route, 403, locality=locality, week=week)
        return error_page(principal, 403, "This key is not scoped to that locality.", request)
    cut = queries.ListFilter(section=section or None, offer=offer or None, gp_practice=gp_practice or None)
    with engine.connect() as conn:
        pw = queries.published(conn, week)
        if pw is None or not queries.locality_known(conn, pw.run_id, locality):
            record_access(engine, principal, route, 404, locality=locality, week=week)
            return error_page(principal, 404, "There is no published list for that locality and week.", request)
        rows, total = queries.list_rows(conn, pw.run_id, pw.week, locality, PAGE_SIZE, (page - 1) * PAGE_SIZE, cut)
        counts = queries.section_counts(conn, pw.run_id, pw.week, locality, cut)
        facets = queries.list_facets(conn, pw.run_id, pw.week, locality)
        offer_places = queries.offer_places(conn, pw.run_id, pw.week, locality, settings)
        funnel = queries.cohort_funnel(conn, pw.run_id, pw.week, locality)
        histogram = queries.score_histogram(conn, pw.run_id, locality, HISTOGRAM_BINS)
        weeks = queries.recent_weeks(conn, pw.week, TREND_WEEKS)
        trend = queries.new_entries(conn, weeks, locality)
        all_weeks = [w.week for w in queries.recent_weeks(conn, "9999-W99", 52)]
    if principal.reidentifies:
        mapping = reid_lookup(settings.reid_map_path)
        for row in rows:
            row["nhs_number"] = mapping.get(row["person_id"])
    record_access(engine, principal, route, 200, locality=locality, week=pw.week, format="html")
    try:
        offer_titles = {o.id: o.title for o in load_catalogue(settings).offers}
    except Exception:  # the page must still show the list if the catalogue file is broken
        offer_titles = {}
    shown = []
    for row in rows:
        item = display_row(row, principal.reidentifies)
        item["change_text"] = change_text(item["change_points"])
        item["score"] = row["score"]
        item["band_order"] = BAND_SEVERITY.get(row["band"], 0)
        waiting = set((row.get("offers_waiting") or "").split(";"))
        item["offers"] = [o for o in (row["suggested_offers"] or "").split(";") if o]
        item["offers_waiting"] = [o for o in item["offers"] if o in waiting]
        shown.append(item)
    groups = [(sid, heading, [r for r in shown if r["section"] == sid]) for sid, heading in SECTIONS]
    pages = max(1, -(-total // PAGE_SIZE))
    filters = {"week": pw.week, "section": cut.section or "", "offer": cut.offer or "",
               "gp_practice": cut.gp_practice or ""}
    query = "&".join(f"{k}={quote(v)}" for k, v in filters.items() if v)
    bin_labels = [f"{i * 100 // HISTOGRAM_BINS}%" for i in range(HISTOGRAM_BINS)]
    return render(
        "locality.html",
        request=request,
        principal=principal,
        locality=locality,
        pw=pw,
        groups=[g for g in groups if g[2]],
        total=total,
        counts=counts,
        sections=SECTIONS,
        page=page,
        pages=pages,
        first_row=(page - 1) * PAGE_SIZE + 1,
        last_row=(page - 1) * PAGE_SIZE + len(shown),
        filters=filters,
        query=query,
        facets=facets,
        offer_titles=offer_titles,
        offer_places=offer_places,
        capacity_rule=CAPACITY_RULE,
        funnel=[{**f, "shown": show_suppressed(f["people"])} for f in funnel],
        weeks=list(reversed(all_weeks)),
        # Charts count people: every bar goes through the disclosure rule (1-7 shown as "<8", rest rounded).
        distribution_svg=bar_chart_svg(
            bin_labels, disclose_counts(histogram), f"Residents of {locality} by predicted risk"
        ),
        trend_svg=bar_chart_svg(
            [w[5:] for w, _, _ in trend],
            disclose_counts([n for _, n, _ in trend]),
            f"New entries to the {locality} list by week",
        ),
    )
