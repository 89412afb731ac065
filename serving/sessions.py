"""Web sign-in sessions: the browser's cookie carries a random session id, never the API key.

Why: a cookie holding the key would hand out a working key to anyone who reads the browser profile,
and could not be ended without revoking the key. Here the server stores only ``sha256(session id)``
with an expiry; signing out revokes the row, revoking the key ends every session at once (the key is
re-checked on each request), and expired rows are deleted by ``upstream retention``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from serving.keys import Principal, principal_for_key_id
from upstream.store import web_sessions

SESSION_COOKIE = "upstream_session"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{40,64}$")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def start_session(engine: Engine, principal: Principal, hours: float, now: datetime | None = None) -> str:
    """A new session for a key that has just proved its secret; returns the id for the cookie (shown once)."""
    now = now or datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            web_sessions.insert().values(
                session_hash=_hash(token),
                key_id=principal.key_id,
                created_at=now,
                expires_at=now + timedelta(hours=hours),
                revoked_at=None,
            )
        )
    return token


def session_principal(engine: Engine, token: str | None, now: datetime | None = None) -> Principal | None:
    """The caller behind a session cookie, or None if malformed, unknown, expired, signed out or its key revoked."""
    if not token or not _TOKEN_RE.match(token):
        return None
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(web_sessions.c.key_id, web_sessions.c.expires_at, web_sessions.c.revoked_at).where(
                web_sessions.c.session_hash == _hash(token)
            )
        ).first()
    if row is None or row.revoked_at is not None or _utc(row.expires_at) <= now:
        return None
    return principal_for_key_id(engine, row.key_id)


def end_session(engine: Engine, token: str | None) -> None:
    """Sign out: the id stops working at once, even if someone kept a copy of the cookie."""
    if not token or not _TOKEN_RE.match(token):
        return
    with engine.begin() as conn:
        conn.execute(
            web_sessions.update()
            .where(web_sessions.c.session_hash == _hash(token), web_sessions.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )


def purge_sessions(engine: Engine, older_than_days: int, now: datetime | None = None) -> int:
    """Delete sessions that expired or were revoked more than ``older_than_days`` ago; returns how many."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    with engine.begin() as conn:
        result = conn.execute(
            web_sessions.delete().where(
                sa.or_(web_sessions.c.expires_at < cutoff, web_sessions.c.revoked_at < cutoff)
            )
        )
    return result.rowcount
