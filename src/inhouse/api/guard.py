"""Every route declares its permission with `guard(...)`; the guard authenticates and decides.

Credentials: `Authorization: Bearer <key>` (API clients), or the session cookie of a signed-in
browser, which must also send the session's CSRF token on anything but GET/HEAD/OPTIONS.
Forwarded-for headers are ignored: the client address is the socket's peer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from inhouse.api.deps import AppState, app_state
from inhouse.auth.authenticate import local_operator, principal_for_key, principal_for_session
from inhouse.auth.policy import Permission, Principal, require
from inhouse.auth.sessions import COOKIE, CSRF_HEADER, SAFE_METHODS, csrf_ok
from inhouse.errors import Forbidden, Unauthorized

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


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def authenticate(request: Request) -> Principal:
    state = app_state(request)
    if not state.settings.auth.enabled:
        return local_operator()
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return await _checked(state, request, lambda s, now: principal_for_key(s, key.strip(), now))
    token = request.cookies.get(COOKIE)
    if token:
        principal, csrf_hash = await _checked(
            state, request, lambda s, now: principal_for_session(s, token, now)
        )
        if request.method not in SAFE_METHODS and not csrf_ok(
            csrf_hash, request.headers.get(CSRF_HEADER)
        ):
            raise Forbidden("missing or wrong CSRF token", code="csrf_failed")
        return principal
    await anyio.to_thread.run_sync(_audit_failure, state, request, "missing_credentials")
    raise Unauthorized(MISSING_KEY)


async def _checked(state: AppState, request: Request, check: Callable[[Session, float], T]) -> T:
    # inline, not in a worker thread: an indexed read takes a fraction of a millisecond,
    # less than the hop to a thread and back
    try:
        with state.db.read() as session:
            return check(session, time.time())
    except Unauthorized as exc:
        await anyio.to_thread.run_sync(_audit_failure, state, request, exc.code or "invalid")
        raise


def _audit_failure(state: AppState, request: Request, reason: str) -> None:
    """A refused credential is a security event; what was sent is never written down."""
    with state.db.write() as session:
        state.audit.record(
            session,
            "anonymous",
            "auth.failed",
            request.url.path,
            {"reason": reason, "method": request.method},
            client_ip(request),
        )
