"""API keys: creation, authentication and revocation.

A key looks like ``ups_<key_id>_<secret>``. Only ``sha256(secret)`` is stored, so a copy of the
database does not hand out working keys; the ``key_id`` part lets us find the row without
scanning, and is what the audit log records (never the secret).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from expectations.contract import LOCALITY_NAME_RE
from upstream.errors import UpstreamError
from upstream.store import api_keys

ROLES = ("locality", "analyst", "admin")
KEY_PREFIX = "ups"
_KEY_RE = re.compile(r"^ups_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})$")
LOCALITY_RE = re.compile(LOCALITY_NAME_RE)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the authenticated key's id, role and locality scope."""

    key_id: str
    role: str
    localities: tuple[str, ...]

    def may_see_locality(self, locality: str) -> bool:
        """Locality keys see only their own localities; analyst and admin see all; anything else sees nothing.

        Fail closed: a role this code does not know (a hand-edited row, a future migration) must not
        fall through to "sees everything"."""
        if self.role == "locality":
            return locality in self.localities
        return self.role in ("analyst", "admin")

    @property
    def reidentifies(self) -> bool:
        """Only locality keys get NHS numbers back, and only for their own residents."""
        return self.role == "locality"


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(engine: Engine, role: str, localities: list[str], label: str | None = None) -> str:
    """Store a new key (hashed) and return the full key; it cannot be shown again."""
    if role not in ROLES:
        raise UpstreamError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    localities = sorted(set(localities))
    if role == "locality" and not localities:
        raise UpstreamError("a locality key needs at least one --locality")
    if role != "locality" and localities:
        raise UpstreamError(f"--locality applies only to locality keys ({role} keys see all localities)")
    for name in localities:
        if not LOCALITY_RE.match(name):
            raise UpstreamError(f"invalid locality name {name!r}")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            api_keys.insert().values(
                key_id=key_id,
                key_hash=_hash_secret(secret),
                role=role,
                localities=localities,
                label=label,
                created_at=datetime.now(UTC),
                revoked_at=None,
            )
        )
    return f"{KEY_PREFIX}_{key_id}_{secret}"


def authenticate(engine: Engine, raw_key: str | None) -> Principal | None:
    """The principal for a presented key, or None if it is malformed, unknown or revoked."""
    if not raw_key:
        return None
    match = _KEY_RE.match(raw_key.strip())
    if not match:
        return None
    key_id, secret = match.groups()
    return _live_principal(engine, key_id, secret)


def principal_for_key_id(engine: Engine, key_id: str) -> Principal | None:
    """The principal of a live key found by id alone: for a web session, which proved the secret at sign-in."""
    return _live_principal(engine, key_id, None)


def _live_principal(engine: Engine, key_id: str, secret: str | None) -> Principal | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(api_keys.c.key_hash, api_keys.c.role, api_keys.c.localities, api_keys.c.revoked_at).where(
                api_keys.c.key_id == key_id
            )
        ).first()
    if row is None or row.revoked_at is not None:
        return None
    if secret is not None and not hmac.compare_digest(row.key_hash, _hash_secret(secret)):
        return None
    # Only rows create_key could have written: a known role and a list of names. A JSON string scope
    # ("North") would otherwise become the tuple of its letters.
    scope = row.localities or []
    if row.role not in ROLES or not isinstance(scope, list) or not all(isinstance(n, str) for n in scope):
        return None
    return Principal(key_id=key_id, role=row.role, localities=tuple(scope))


def list_keys(engine: Engine) -> list[dict]:
    """Key metadata for ``upstream keys list`` (never hashes or secrets)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                api_keys.c.key_id,
                api_keys.c.role,
                api_keys.c.localities,
                api_keys.c.label,
                api_keys.c.created_at,
                api_keys.c.revoked_at,
            ).order_by(api_keys.c.created_at)
        ).all()
    return [dict(row._mapping) for row in rows]


def revoke_key(engine: Engine, key_id: str) -> bool:
    """Mark a key revoked (kept for the audit trail); False if there is no such live key."""
    with engine.begin() as conn:
        result = conn.execute(
            api_keys.update()
            .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    return result.rowcount == 1
