"""CSRF protection for every form post: a double-submit token, reusable by any page with a form.

How to use it (the list page and the actions control reuse these two pieces):

* in the route that renders the form, ``render(..., request=request)`` (serving.web) puts ``csrf_token``
  in the template context and sets the ``upstream_csrf`` cookie when the browser has none;
* in the template, ``{% from "_forms.html" import csrf_field %}`` and ``{{ csrf_field(csrf_token) }}``
  inside the ``<form>``;
* on the POST route, ``dependencies=[Depends(require_csrf)]``.

Why double-submit: a cross-site page can make the browser send our cookies but cannot read them, so it
cannot put the same random value in the form. The cookie is also ``SameSite=Strict`` and ``httpOnly``.
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Annotated

from fastapi import Form, HTTPException, Request
from fastapi.responses import Response

CSRF_COOKIE = "upstream_csrf"
CSRF_FIELD = "csrf_token"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{40,64}$")


class CsrfRejected(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=403, detail="the form has expired or did not come from this site; reload and retry")


def csrf_token_for(request: Request) -> str:
    """The browser's token (a new one when it has none, remembered for :func:`set_csrf_cookie`)."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and _TOKEN_RE.match(existing):
        return existing
    issued = getattr(request.state, "csrf_issued", None)
    if issued is None:
        issued = secrets.token_urlsafe(32)
        request.state.csrf_issued = issued
    return issued


def set_csrf_cookie(response: Response, request: Request, secure: bool) -> None:
    """Send the token cookie if this request issued one."""
    issued = getattr(request.state, "csrf_issued", None)
    if issued:
        response.set_cookie(CSRF_COOKIE, issued, httponly=True, samesite="strict", secure=secure, path="/")


async def require_csrf(request: Request, csrf_token: Annotated[str, Form(max_length=128)] = "") -> None:
    """Dependency for POST routes: the form's token must equal the cookie's (constant-time compare).

    A request that carries its key in ``X-API-Key`` or a ``Bearer`` token is a script, not a browser
    form: a cross-site page cannot set those headers, so such requests need no token (the same route can
    serve the web form and API clients). Not any ``Authorization``: browsers re-send cached Basic
    credentials (e.g. a proxy's) on cross-site posts by themselves."""
    bearer = request.headers.get("authorization", "").lower().startswith("bearer ")
    if request.headers.get("x-api-key") or bearer:
        return
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    if not (cookie and csrf_token and _TOKEN_RE.match(cookie) and hmac.compare_digest(cookie, csrf_token)):
        raise CsrfRejected()
