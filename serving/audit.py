"""Append-only audit of person-level access: who (key id, role), what (route, person or locality), when, outcome."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from serving.keys import Principal
from upstream.store import audit_log


class AuditUnavailable(RuntimeError):
    """The audit row could not be written, so the data must not be served (fail closed)."""


def record_access(
    engine: Engine,
    principal: Principal,
    route: str,
    status_code: int,
    person_id: str | None = None,
    locality: str | None = None,
    week: str | None = None,
) -> None:
    """One row per access, including refused ones (a probe for someone else's resident is worth seeing).

    Raises ``AuditUnavailable`` when the DB cannot take the row (e.g. SQLite locked past its busy timeout
    by a long pipeline write): the caller answers 503 rather than serve person-level data unaudited."""
    try:
        _insert(engine, principal, route, status_code, person_id, locality, week)
    except OperationalError as exc:
        raise AuditUnavailable("audit log unavailable") from exc


def _insert(engine, principal, route, status_code, person_id, locality, week) -> None:
    with engine.begin() as conn:
        conn.execute(
            audit_log.insert().values(
                at=datetime.now(UTC),
                key_id=principal.key_id,
                role=principal.role,
                route=route,
                person_id=person_id,
                locality=locality,
                week=week,
                status_code=status_code,
            )
        )
