"""Web control for actions: one form per listed resident on ``/ui/localities/{locality}/actions``.

Its own page (linked from the list page) so the list page, which other work is reshaping, stays untouched.
CSRF: the shared double-submit token of ``serving.csrf`` (as every other form); a refused post is audited.
Writes go through ``serving.actions_api.record_action``: the same scope rules, validation and audit as the API.
"""


from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from loop.actions import ACTIONS, offer_ids, read_actions
from serving import queries
from serving.actions_api import ActionIn, record_action
from serving.audit import record_access
from serving.csrf import csrf_ok
from serving.deps import EngineDep, LocalityPath, OptionalPrincipal, SettingsDep, WeekQuery
from serving.schemas import PERSON_ID_PATTERN, WEEK_PATTERN
from serving.web import _REDIRECT, _html_error, _to_login, error_page, render

ROUTE = "/ui/localities/{locality}/actions"
#: Every status the pages answer, for the OpenAPI schema (schemathesis checks it).
PAGE_RESPONSES = {
    **_REDIRECT,
    **_html_error(403, "Not a locality key for this locality, or a bad form token"),
    **_html_error(404, "No published list for that locality and week, or resident not found"),
    **_html_error(400, "The action breaks a rule (e.g. an offer is required); the page says which"),
    **_html_error(503, "The audit log could not be written"),
}

#: The action forms and the evaluation report under /ui.
action_pages = APIRouter(prefix="/ui", tags=["web pages"])


@action_pages.get("/localities/{locality}/actions", response_class=HTMLResponse, responses=PAGE_RESPONSES)
def actions_page(
    request: Request,
    principal: OptionalPrincipal,
    settings: SettingsDep,
    engine: EngineDep,
    locality: LocalityPath,
    week: WeekQuery = None,
    saved: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The week's list with a form per resident to record what the team did."""
    if principal is None:
        return _to_login()
    if principal.role != "locality" or not principal.may_see_locality(locality):
        record_access(engine, principal, ROUTE, 403, locality=locality, week=week)
        return error_page(principal, 403, "Only a locality key for this locality records actions.", request)
    with engine.connect() as conn:
        pw = queries.published(conn, week)
        if pw is None or not queries.locality_known(conn, pw.run_id, locality):
            record_access(engine, principal, ROUTE, 404, locality=locality, week=week)
            return error_page(principal, 404, "There is no published list for that locality and week.", request)
        rows, _total = queries.list_rows(conn, pw.run_id, pw.week, locality)  # the whole list: nobody cut off
    done = read_actions(settings, (pw.week, pw.week), [locality])
    recorded: dict[str, list[str]] = {}
    for r in done.iter_rows(named=True):
        recorded.setdefault(r["person_id"], []).append(r["action"] + (f" ({r['offer']})" if r["offer"] else ""))
    record_access(engine, principal, ROUTE, 200, locality=locality, week=pw.week)
    return render("actions.html", request=request, principal=principal, locality=locality, pw=pw, rows=rows,
                  actions=ACTIONS, offers=sorted(offer_ids(settings)), recorded=recorded, saved=saved)


@action_pages.post("/localities/{locality}/actions", response_class=HTMLResponse, responses=PAGE_RESPONSES)
def post_action_form(
    request: Request,
    principal: OptionalPrincipal,
    settings: SettingsDep,
    engine: EngineDep,
    locality: LocalityPath,
    person_id: Annotated[str, Form(pattern=PERSON_ID_PATTERN)],
    week: Annotated[str, Form(pattern=WEEK_PATTERN)],
    action: Annotated[str, Form(max_length=20)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    offer: Annotated[str, Form(max_length=60)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Record one action from the form; back to the page with a confirmation."""
    if principal is None:
        return _to_login()
    if not csrf_ok(request, csrf_token):  # the shared double-submit check (serving/csrf.py), audited here
        record_access(engine, principal, ROUTE, 403, person_id=person_id, locality=locality, week=week)
        return error_page(principal, 403, "The form has expired or did not come from this site; reload the page.",
                          request)
    try:
        out = record_action(settings, principal, person_id,
                            ActionIn(week=week, action=action, offer=offer or None, reason=reason or None), engine)
    except HTTPException as exc:  # refused (and audited) by the API's rules
        # a broken rule is a 400 page here (422 stays FastAPI's JSON for malformed form fields)
        return render("error.html", status_code=400 if exc.status_code == 422 else exc.status_code,
                      title="Not recorded", message=str(exc.detail), principal=principal, request=request)
    note = "recorded" if out.recorded else "already recorded"
    return RedirectResponse(f"/ui/localities/{quote(locality)}/actions?week={week}&saved={quote(note)}",
                            status_code=303)


@action_pages.get("/evaluation", response_class=HTMLResponse, responses=PAGE_RESPONSES)
def evaluation_page(request: Request, principal: OptionalPrincipal, settings: SettingsDep, engine: EngineDep) -> Response:
    """The latest ``upstream evaluate`` report, for analysts (aggregates only, counts already suppressed)."""
    if principal is None:
        return _to_login()
    if principal.role not in ("analyst", "admin"):
        record_access(engine, principal, "/ui/evaluation", 403)
        return error_page(principal, 403, "The evaluation report is for analysts.", request)
    reports = sorted((settings.home / "evaluation").glob("*/evaluation.md"))
    if not reports:
        return error_page(principal, 404, "No evaluation yet: run `upstream evaluate`.", request)
    return render("evaluation.html", request=request, principal=principal, report=reports[-1].read_text(),
                  folder=reports[-1].parent.name)
