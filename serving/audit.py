"""Append-only audit of person-level access: who (key id, role), what (route, person or locality), when, outcome.

Every refusal of a person-level request is audited too (401 with no key aside: there is nobody to name),
including requests refused by validation (422): a locality key asking for a resident by NHS number or by
an upper-cased id is a probe worth seeing. The subject as given is kept only as a keyed hash; when it is
an NHS number or an id in another spelling, the person it points at is recorded as their pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from serving.keys import Principal
from upstream.store import audit_log

#: Route templates that serve person-level data (lists, residents). Routes with ``{person_id}`` in their
#: template count automatically; other engineers' person-level routes add their template here.
PERSON_LEVEL_ROUTES: set[str] = {
    "/localities/{locality}/rising-risk",
    "/residents/{person_id}/score",
    "/ui/localities/{locality}",
    "/ui/localities/{locality}/actions",  # the week's list with a form per resident (issue 11)
    "/actions",  # what teams did, per (pseudonymised) person
}
_PERSON_ID_RE = re.compile(r"^[0-9a-f]{16,64}$")


def is_person_level(route_template: str | None) -> bool:
    return bool(route_template) and (route_template in PERSON_LEVEL_ROUTES or "{person_id}" in route_template)


def subject_of_refusal(given: str, key: bytes) -> tuple[str | None, str]:
    """(pseudonym the given subject points at or None, keyed hash of the text as given).

    Why keyed: NHS numbers are 10 digits with a check digit, so a plain hash is reversed by brute force."""
    from expectations.pseudonymise import pseudonymise_one

    digest = hmac.new(key, b"audit-subject:" + given.encode("utf-8", "replace"), hashlib.sha256).hexdigest()
    compact = re.sub(r"[\s-]", "", given)
    if re.fullmatch(r"\d{10}", compact):
        return pseudonymise_one(compact, key), digest
    if _PERSON_ID_RE.match(given.strip().lower()):
        return given.strip().lower(), digest
    return None, digest


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
    format: str | None = None,
    subject_hash: str | None = None,
) -> None:
    """One row per access, including refused ones (a probe for someone else's resident is worth seeing).

    Raises ``AuditUnavailable`` when the DB cannot take the row (e.g. SQLite locked past its busy timeout
    by a long pipeline write): the caller answers 503 rather than serve person-level data unaudited."""
    try:
        _insert(engine, principal, route, status_code, person_id, locality, week, format, subject_hash)
    except OperationalError as exc:
        raise AuditUnavailable("audit log unavailable") from exc


def _insert(engine, principal, route, status_code, person_id, locality, week, format, subject_hash) -> None:
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
                format=format,
                subject_hash=subject_hash,
            )
        )


def recent_audit_rows(engine: Engine, limit: int) -> list[dict]:
    """The latest ``limit`` audit rows, newest first, without the internal row id (the admin's ``/audit``)."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)).all()
    return [{k: v for k, v in row._mapping.items() if k != "id"} for row in rows]
