"""/admin/groups: teams, their members, their collection grants and quotas."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from inhouse.api.admin.context import LimitsBody, directory_for
from inhouse.api.admin.views import group_view
from inhouse.api.guard import guard
from inhouse.auth.policy import Permission

router = APIRouter(prefix="/admin/groups")
READ = [guard(Permission.DIRECTORY_READ)]
WRITE = [guard(Permission.DIRECTORY_WRITE)]


class NewGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)


@router.get("", dependencies=READ)
def list_groups(request: Request) -> dict[str, Any]:
    with directory_for(request, write=False) as directory:
        return {"groups": [group_view(directory, g) for g in directory.groups()]}


@router.post("", status_code=201, dependencies=WRITE)
def create_group(body: NewGroup, request: Request) -> dict[str, Any]:
    with directory_for(request, write=True) as directory:
        return group_view(directory, directory.add_group(body.name))


@router.get("/{name}", dependencies=READ)
def get_group(name: str, request: Request) -> dict[str, Any]:
    with directory_for(request, write=False) as directory:
        return group_view(directory, directory.group(name))


@router.patch("/{name}", dependencies=WRITE)
def change_group(name: str, body: LimitsBody, request: Request) -> dict[str, Any]:
    with directory_for(request, write=True) as directory:
        return group_view(directory, directory.update_group(name, body.update()))


@router.delete("/{name}", status_code=204, dependencies=WRITE)
def delete_group(name: str, request: Request) -> Response:
    with directory_for(request, write=True) as directory:
        directory.remove_group(name)
    return Response(status_code=204)


@router.put("/{name}/members/{user}", dependencies=WRITE)
def add_member(name: str, user: str, request: Request) -> dict[str, Any]:
    with directory_for(request, write=True) as directory:
        directory.join(user, name)
        return group_view(directory, directory.group(name))


@router.delete("/{name}/members/{user}", dependencies=WRITE)
def remove_member(name: str, user: str, request: Request) -> dict[str, Any]:
    with directory_for(request, write=True) as directory:
        directory.leave(user, name)
        return group_view(directory, directory.group(name))


@router.put("/{name}/collections/{collection}", dependencies=WRITE)
def grant_collection(name: str, collection: str, request: Request) -> dict[str, Any]:
    with directory_for(request, write=True) as directory:
        directory.grant(name, collection)
        return group_view(directory, directory.group(name))


@router.delete("/{name}/collections/{collection}", dependencies=WRITE)
def revoke_collection(name: str, collection: str, request: Request) -> dict[str, Any]:
    with directory_for(request, write=True) as directory:
        directory.revoke_grant(name, collection)
        return group_view(directory, directory.group(name))
