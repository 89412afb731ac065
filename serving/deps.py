"""Request dependencies shared by the API and the web pages: settings, engine, caller identity."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine

from expectations.contract import LOCALITY_NAME_RE
from serving.keys import Principal, authenticate
from serving.schemas import WEEK_PATTERN
from serving.sessions import SESSION_COOKIE, session_principal
from upstream.settings import Settings
from upstream.store import get_engine

COOKIE_NAME = SESSION_COOKIE  # holds a server-side session id (serving.sessions), never the key

# auto_error=False: we decide between header, bearer and cookie ourselves, and always answer 401 (not 403).
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key: ups_<key_id>_<secret>")
bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token")
session_cookie = APIKeyCookie(
    name=COOKIE_NAME, auto_error=False, description="Web session id, set by the web sign-in form"
)


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


_tuned: set[int] = set()


def _wal_normal_sync(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def engine_of(request: Request) -> Engine:
    """The operational DB engine: created on first use (never at import), then cached by upstream.store.

    On SQLite, serving's connections use ``synchronous=NORMAL`` (the setting SQLite recommends for WAL):
    each audit row is committed before the response is sent and survives a crash of the server
    process, but a commit no longer waits for an fsync (about 3-4 ms each here, and the source of the
    p99 tail). An OS crash or power cut can lose the last few commits; use PostgreSQL where that matters.
    """
    engine = get_engine(request.app.state.settings.db_url)
    if engine.dialect.name == "sqlite" and id(engine) not in _tuned:
        _tuned.add(id(engine))
        sa.event.listen(engine, "checkout", lambda dbapi_conn, _rec, _proxy: _wal_normal_sync(dbapi_conn, _rec))
    return engine


async def optional_principal(
    request: Request,
    header_key: Annotated[str | None, Depends(api_key_header)],
    bearer_key: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    cookie_key: Annotated[str | None, Depends(session_cookie)],
) -> Principal | None:
    """The caller, from the first credential presented (header, bearer, then session cookie); None if absent or invalid.

    Async on purpose: the lookup is one primary-key read (~0.2 ms), cheaper than a thread-pool hop."""
    raw = header_key or (bearer_key.credentials if bearer_key else None)
    principal = authenticate(engine_of(request), raw) if raw else session_principal(engine_of(request), cookie_key)
    request.state.principal = principal
    return principal


async def require_principal(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    if principal is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing, invalid or revoked API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


#: Route parameters, as in the FastAPI full-stack template's ``api/deps.py``: a route names what it needs
#: (``principal: CurrentPrincipal``) instead of each spelling out ``Depends(...)`` or closing over a factory.
CurrentPrincipal = Annotated[Principal, Depends(require_principal)]
#: Web pages: the signed-in caller or None (the page then redirects to the sign-in form instead of a 401).
OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
EngineDep = Annotated[Engine, Depends(engine_of)]
#: A locality in a path: the contract's names (every locality ingest accepts can be served).
LocalityPath = Annotated[str, PathParam(pattern=LOCALITY_NAME_RE, max_length=80)]
#: The published week asked for, by the API and the pages alike.
WeekQuery = Annotated[str | None, Query(pattern=WEEK_PATTERN, description="ISO week; latest when omitted")]
