"""Actions through the API (DESIGN §9): record what a team did for a resident; read them back, pseudonymised.

Scoped exactly like reads: a locality key writes only for residents of its own localities (anyone else's
resident gets the same 404 as an unknown one); analysts and admins read actions of every locality but never
write them; nobody gets NHS numbers from these routes. Every write is audited in the SAME transaction as the
action row (no unaudited write can exist); refusals are audited too. Rules come from loop/actions.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import polars as pl
from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine

from loop.actions import ACTIONS, action_problem, offer_ids, read_actions, store_actions
from serving import queries
from serving.audit import record_access
from serving.deps import CurrentPrincipal, EngineDep, SettingsDep
from serving.keys import Principal
from serving.schemas import PERSON_ID_PATTERN, WEEK_PATTERN, error_responses
from upstream.settings import Settings
from upstream.store import audit_log

WRITE_ROUTE = "POST /residents/{person_id}/actions"
READ_ROUTE = "/actions"


class ActionIn(BaseModel):
    week: str = Field(pattern=WEEK_PATTERN, description="ISO week of the list the person was on")
    action: str = Field(description="one of " + ", ".join(ACTIONS))
    offer: str | None = Field(None, max_length=60, description="offer id from the service catalogue")
    reason: str | None = Field(None, max_length=500, description="required for not_appropriate")


class _Action(BaseModel):
    """What one recorded action says: the fields a write returns and a read lists."""

    person_id: str
    week: str
    action: str
    offer: str | None
    reason: str | None
    locality: str | None


class ActionOut(_Action):
    recorded: bool  # False when the same action was already recorded (idempotent)


class ActionRow(_Action):
    source: str
    recorded_at: datetime


def record_action(
    settings: Settings, principal: Principal, person_id: str, body: ActionIn, engine: Engine
) -> ActionOut:
    """Validate, check scope, then store the action and its audit row together. Raises HTTPException."""

    def refuse(code: int, detail: str, locality: str | None = None) -> HTTPException:
        record_access(engine, principal, WRITE_ROUTE, code, person_id=person_id, locality=locality, week=body.week)
        return HTTPException(status_code=code, detail=detail)

    if principal.role != "locality":
        raise refuse(403, "only locality keys record actions (analysts and admins read them)")
    with engine.connect() as conn:
        history = queries.resident_history(conn, person_id, queries.history_store(settings))
    if not history or not principal.may_see_locality(history[0]["locality"]):
        raise refuse(404, "resident not found")
    locality = history[0]["locality"]
    problem = action_problem(body.action, body.offer, body.reason, offer_ids(settings))
    if problem:
        raise refuse(422, problem, locality)
    row = pl.DataFrame([{"person_id": person_id, "week": body.week, "action": body.action, "offer": body.offer,
                         "reason": body.reason, "locality": locality}],
                       schema={k: pl.String for k in ("person_id", "week", "action", "offer", "reason", "locality")})
    audit = {"at": datetime.now(UTC), "key_id": principal.key_id, "role": principal.role, "route": WRITE_ROUTE,
             "person_id": person_id, "locality": locality, "week": body.week, "status_code": 201}
    new = store_actions(row, f"api:{principal.key_id}", settings,
                        also=lambda conn: conn.execute(audit_log.insert().values(**audit)))
    return ActionOut(person_id=person_id, week=body.week, action=body.action, offer=body.offer, reason=body.reason,
                     locality=locality, recorded=bool(new))


#: The action routes of the API (added by serving.app.create_app).
actions_routes = APIRouter()


@actions_routes.post(
    "/residents/{person_id}/actions",
    response_model=ActionOut,
    status_code=201,
    tags=["actions"],
    responses=error_responses(401, 403, 404, 503),
)
def post_action(
    person_id: Annotated[str, PathParam(pattern=PERSON_ID_PATTERN, description="Pseudonymised id")],
    body: ActionIn,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    engine: EngineDep,
) -> ActionOut:
    """Record an action for a resident of one of the key's localities (audited with the write)."""
    return record_action(settings, principal, person_id, body, engine)


@actions_routes.get(
    "/actions", response_model=list[ActionRow], tags=["actions"], responses=error_responses(401, 403, 503)
)
def get_actions(
    principal: CurrentPrincipal,
    settings: SettingsDep,
    engine: EngineDep,
    week_from: Annotated[str, Query(alias="from", pattern=WEEK_PATTERN)] = "0000-W01",
    week_to: Annotated[str, Query(alias="to", pattern=WEEK_PATTERN)] = "9999-W53",
) -> Any:
    """Recorded actions, pseudonymised: analysts and admins see every locality, locality keys their own."""
    if principal.role in ("analyst", "admin"):
        localities = None
    elif principal.role == "locality":
        localities = list(principal.localities)
    else:
        record_access(engine, principal, READ_ROUTE, 403)
        raise HTTPException(status_code=403, detail="this key's role cannot read actions")
    rows = read_actions(settings, (week_from, week_to), localities)
    record_access(engine, principal, READ_ROUTE, 200)  # before the rows leave the server
    return rows.to_dicts()
