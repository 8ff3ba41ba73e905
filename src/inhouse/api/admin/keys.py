"""/admin/keys: everyone manages their own keys; directory writers manage anyone's."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ConfigDict, Field

from inhouse.api.admin.context import LimitsBody, directory_for
from inhouse.api.admin.views import key_view
from inhouse.api.guard import guard, principal_of
from inhouse.auth.directory import Directory
from inhouse.auth.policy import Permission, Principal, allows
from inhouse.errors import Forbidden, NotFound

router = APIRouter(prefix="/admin/keys")
OWN = [guard(Permission.KEYS_OWN)]


class NewKey(LimitsBody):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, max_length=64)  # default: oneself
    name: str = Field(default="", max_length=128)
    models: list[str] | None = Field(default=None, max_length=256)
    collections: list[str] | None = Field(default=None, max_length=256)
    expires_in_days: float | None = Field(default=None, gt=0, le=3650)


def _owner_filter(principal: Principal, directory: Directory, user: str | None) -> int | None:
    """Whose keys the caller may see: anyone's for directory readers, else only their own."""
    if allows(principal, Permission.DIRECTORY_READ):
        return None if user is None else directory.user(user).id
    if user is not None and user != principal.user_name:
        raise NotFound(f"no user named {user!r}")
    return principal.user_id if principal.user_id is not None else -1


def _writable_owner(principal: Principal, directory: Directory, public_id: str) -> int | None:
    """Whose keys the caller may change: anyone's for directory writers, else their own.
    Who may read the directory learns 403 for another's key; others learn nothing (404)."""
    if allows(principal, Permission.DIRECTORY_WRITE):
        return None
    if allows(principal, Permission.DIRECTORY_READ):
        key = directory.key(public_id)
        if key.user_id != principal.user_id:
            raise Forbidden("your role may not change another user's keys")
    return principal.user_id if principal.user_id is not None else -1


@router.get("", dependencies=OWN)
def list_keys(request: Request, user: str | None = None) -> dict[str, Any]:
    principal = principal_of(request)
    with directory_for(request, write=False) as directory:
        owner = _owner_filter(principal, directory, user)
        return {"keys": [key_view(directory, k) for k in directory.keys(owner)]}


@router.post("", status_code=201, dependencies=OWN)
def create_key(body: NewKey, request: Request) -> dict[str, Any]:
    """A new key; its secret is in this response only."""
    principal = principal_of(request)
    owner_name = body.user or principal.user_name
    if owner_name != principal.user_name and not allows(principal, Permission.DIRECTORY_WRITE):
        if allows(principal, Permission.DIRECTORY_READ):
            raise Forbidden("your role may not create keys for other users")
        raise NotFound(f"no user named {owner_name!r}")
    expires_at = None
    if body.expires_in_days is not None:
        expires_at = time.time() + body.expires_in_days * 86400
    with directory_for(request, write=True) as directory:
        key, secret = directory.create_key(
            owner_name,
            name=body.name,
            models=body.models,
            collections=body.collections,
            expires_at=expires_at,
            limits=body.update(),
        )
        return {**key_view(directory, key), "key": secret}


@router.get("/{public_id}", dependencies=OWN)
def get_key(public_id: str, request: Request) -> dict[str, Any]:
    principal = principal_of(request)
    with directory_for(request, write=False) as directory:
        owner = _owner_filter(principal, directory, None)
        return key_view(directory, directory.key(public_id, owner))


@router.patch("/{public_id}", dependencies=[guard(Permission.DIRECTORY_WRITE)])
def change_key(public_id: str, body: LimitsBody, request: Request) -> dict[str, Any]:
    with directory_for(request, write=True) as directory:
        return key_view(directory, directory.update_key(public_id, body.update()))


@router.delete("/{public_id}", dependencies=OWN)
def revoke_key(public_id: str, request: Request) -> dict[str, Any]:
    """Revoke now: the key fails from its next request on."""
    principal = principal_of(request)
    with directory_for(request, write=True) as directory:
        key = directory.revoke_key(public_id, _writable_owner(principal, directory, public_id))
        return key_view(directory, key)
