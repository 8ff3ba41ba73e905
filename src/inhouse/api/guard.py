"""Every route declares its permission with `guard(...)`; the guard authenticates and decides.

Credentials: `Authorization: Bearer <key>` (API clients), or the session cookie of a signed-in
browser, which must also send the session's CSRF token on anything but GET/HEAD/OPTIONS.
Forwarded-for headers are ignored: the client address is the socket's peer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from fastapi import Depends, Request

from inhouse.api.deps import app_state
from inhouse.auth.authenticate import local_operator
from inhouse.auth.policy import Permission, Principal, require
from inhouse.auth.sessions import COOKIE, CSRF_HEADER, SAFE_METHODS, csrf_ok
from inhouse.errors import Forbidden, Unauthorized
from inhouse.governance.caller import Caller

T = TypeVar("T")
MISSING_KEY = (
    "Missing API key: send it as 'Authorization: Bearer <key>'. The admin key was printed "
    "when the server first started."
)


class Guard:
    """A route dependency: authenticate (unless public), then require `permission`."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    async def __call__(self, request: Request) -> Principal | None:
        if self.permission is Permission.PUBLIC:
            return None
        principal = await authenticate(request)
        require(principal, self.permission)
        request.state.principal = principal
        return principal


def guard(permission: Permission) -> Any:
    return Depends(Guard(permission))


def principal_of(request: Request) -> Principal:
    """The principal the route's guard authenticated."""
    principal: Principal = request.state.principal
    return principal


def caller_of(request: Request) -> Caller:
    """The authenticated principal and its address, as governance takes them."""
    return Caller(principal_of(request), client_ip(request))


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def authenticate(request: Request) -> Principal:
    """The caller's principal. A database server is read in a worker thread: a slow database
    must not stall the event loop and every stream it serves (see auth/credentials.py)."""
    state = app_state(request)
    if not state.settings.auth.enabled:
        return local_operator()
    credentials = state.credentials
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return await _checked(request, credentials.by_key, key.strip())
    token = request.cookies.get(COOKIE)
    if token:
        principal, csrf_hash = await _checked(request, credentials.by_session, token)
        if request.method not in SAFE_METHODS and not csrf_ok(
            csrf_hash, request.headers.get(CSRF_HEADER)
        ):
            raise Forbidden("missing or wrong CSRF token", code="csrf_failed")
        return principal
    await _refused(request, "missing_credentials")
    raise Unauthorized(MISSING_KEY)


async def _checked(request: Request, check: Callable[[str], T], credential: str) -> T:
    try:
        if app_state(request).credentials.inline:
            return check(credential)
        return await anyio.to_thread.run_sync(check, credential)
    except Unauthorized as exc:
        await _refused(request, exc.code or "invalid")
        raise


async def _refused(request: Request, reason: str) -> None:
    credentials = app_state(request).credentials
    path, method, ip = request.url.path, request.method, client_ip(request)
    await anyio.to_thread.run_sync(credentials.refused, reason, path, method, ip)
