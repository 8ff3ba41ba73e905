"""Who may open a page: the session cookie's principal, checked like any API call.

A visitor who is not signed in is sent to /login (and back afterwards); a signed-in user
without the page's permission gets a 403 page. The API routes each page calls are guarded
on their own, so a page shows only what its user could fetch anyway."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from fastapi import Depends, Request

from inhouse.api.guard import authenticate
from inhouse.auth.policy import Permission, Principal, allows
from inhouse.errors import Unauthorized


class PageRefused(Exception):
    """Raised by a page's dependency; rendered as a redirect to sign-in or a 403 page."""

    def __init__(self, status: int, message: str, next_path: str = "/") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.next_path = next_path


class PageGuard:
    """A page route dependency: the signed-in principal, which must hold `permission`."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    async def __call__(self, request: Request) -> Principal:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        try:
            principal = await authenticate(request)
        except Unauthorized as exc:
            raise PageRefused(401, "Please sign in.", next_path=path) from exc
        if not allows(principal, self.permission):
            raise PageRefused(403, "Your account may not open this page.")
        request.state.principal = principal
        return principal


def page_guard(permission: Permission) -> Any:
    return Depends(PageGuard(permission))


# A path on this site: one "/", then no "/" or "\" (browsers read "/\\host" and "//host" as
# another site) and no control character or space (browsers drop tabs: "/\t/host").
LOCAL_PATH = re.compile(r"/(?![/\\])[^\\\x00-\x20\x7f]*")


def local_path(path: str) -> str:
    """`path` if it can only lead to this site, else "/" (where to go after signing in)."""
    return path if LOCAL_PATH.fullmatch(path) else "/"


def login_url(next_path: str) -> str:
    """/login with a return path on this site."""
    return "/login?next=" + quote(local_path(next_path), safe="/")
