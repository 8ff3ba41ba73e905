"""/admin/users: accounts, roles, passwords and per-user quotas."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from inhouse.api.admin.context import LimitsBody, directory_for
from inhouse.api.admin.views import user_view
from inhouse.api.guard import guard
from inhouse.auth.policy import Permission

router = APIRouter(prefix="/admin/users")


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    role: str = "member"
    password: str | None = Field(default=None, max_length=1024)
    groups: list[str] = Field(default_factory=list, max_length=64)


class UserChange(LimitsBody):
    role: str | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, max_length=1024)


@router.get("", dependencies=[guard(Permission.DIRECTORY_READ)])
def list_users(request: Request) -> dict[str, Any]:
    with directory_for(request, write=False) as directory:
        return {"users": [user_view(directory, u) for u in directory.users()]}


@router.post("", status_code=201, dependencies=[guard(Permission.DIRECTORY_WRITE)])
def create_user(body: NewUser, request: Request) -> dict[str, Any]:
    with directory_for(request, write=True) as directory:
        user = directory.add_user(body.name, body.role, password=body.password, groups=body.groups)
        return user_view(directory, user)


@router.get("/{name}", dependencies=[guard(Permission.DIRECTORY_READ)])
def get_user(name: str, request: Request) -> dict[str, Any]:
    with directory_for(request, write=False) as directory:
        return user_view(directory, directory.user(name))


@router.patch("/{name}", dependencies=[guard(Permission.DIRECTORY_WRITE)])
def change_user(name: str, body: UserChange, request: Request) -> dict[str, Any]:
    with directory_for(request, write=True) as directory:
        if body.password is not None:
            directory.set_password(name, body.password)
        user = directory.update_user(
            name, role=body.role, disabled=body.disabled, limits=body.update()
        )
        return user_view(directory, user)


@router.delete("/{name}", status_code=204, dependencies=[guard(Permission.DIRECTORY_WRITE)])
def delete_user(name: str, request: Request) -> Response:
    with directory_for(request, write=True) as directory:
        directory.remove_user(name)
    return Response(status_code=204)
