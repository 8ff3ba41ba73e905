"""Web sign-in: POST /admin/login sets the session cookie; /admin/logout ends it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from inhouse.api.admin.views import user_view
from inhouse.api.deps import app_state
from inhouse.api.guard import client_ip, guard, principal_of
from inhouse.auth.directory import Directory
from inhouse.auth.policy import GRANTS, Permission
from inhouse.auth.sessions import (
    COOKIE,
    check_password,
    close_session,
    open_session,
    still_valid,
)
from inhouse.errors import Unauthorized

router = APIRouter(prefix="/admin")


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


@router.post("/login", dependencies=[guard(Permission.PUBLIC)])
def login(body: Login, request: Request) -> JSONResponse:
    """Check the password; set an HttpOnly session cookie; return the CSRF token, once."""
    state = app_state(request)
    ip = client_ip(request)
    attempt = state.login_throttle.begin(body.name, ip)  # 429 before any hashing
    checked = check_password(state.db, body.name, body.password)  # no lock held meanwhile
    with state.db.write() as session:
        user = still_valid(session, checked) if checked is not None else None
        if user is None:
            state.audit.record(session, "anonymous", "auth.login_failed", body.name, {}, ip)
        else:
            token, csrf = open_session(session, user, state.settings.auth.session_hours)
            state.audit.record(session, f"user:{user.name}", "auth.login", user.name, {}, ip)
    if user is None:  # the failure is committed to the audit trail before it is answered
        raise Unauthorized("Wrong user name or password.", code="invalid_credentials")
    state.login_throttle.succeeded(attempt)
    response = JSONResponse({"user": user.name, "role": user.role, "csrf_token": csrf})
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(state.settings.auth.session_hours * 3600),
        httponly=True,
        secure=state.settings.auth.secure_cookies,
        samesite="strict",
        path="/",
    )
    return response


@router.post("/logout", dependencies=[guard(Permission.SIGNED_IN)])
def logout(request: Request) -> JSONResponse:
    state = app_state(request)
    token = request.cookies.get(COOKIE)
    with state.db.write() as session:
        if token:
            close_session(session, token)
        state.audit.record(
            session, principal_of(request).actor, "auth.logout", "", {}, client_ip(request)
        )
    response = JSONResponse({"signed_out": True})
    response.delete_cookie(
        COOKIE,
        path="/",
        httponly=True,
        secure=state.settings.auth.secure_cookies,
        samesite="strict",
    )
    return response


@router.get("/me", dependencies=[guard(Permission.SIGNED_IN)])
def me(request: Request) -> dict[str, Any]:
    """Who the credentials belong to, and what they allow."""
    principal = principal_of(request)
    state = app_state(request)
    body: dict[str, Any] = {
        "user": principal.user_name,
        "role": principal.role,
        "via": principal.via,
        "key": principal.key_public_id,
        "permissions": sorted(GRANTS[principal.role]),
        "models": None if principal.models is None else sorted(principal.models),
        "collections": None if principal.collections is None else sorted(principal.collections),
    }
    if principal.user_id is not None:
        with state.db.read() as session:
            directory = Directory(session, state.audit, principal.actor)
            body["account"] = user_view(directory, directory.user_by_id(principal.user_id))
    return body
