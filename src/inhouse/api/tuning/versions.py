"""Tuned versions over HTTP: promote a job to an alias, roll an alias back, its history, and
the continual-learning schedules.

- `POST /v1/fine_tuning/jobs/{id}/promote {"alias", "force"}`: refused (409,
  `evaluation_gate_not_passed`) unless the job's evaluation passed; `"force": true` overrides
  and is audited as forced.
- `POST /v1/fine_tuning/aliases/{alias}/rollback`: one step back (not under /v1/models, whose
  `{model}` routes belong to the OpenAI models API).
- `GET /v1/fine_tuning/aliases/{alias}/history`: the versions it pointed to, with scores.
- `/v1/fine_tuning/schedules`: list, create, delete (those who manage tuning).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from inhouse.api.deps import app_state
from inhouse.api.guard import client_ip, guard, principal_of
from inhouse.auth.policy import Permission
from inhouse.errors import InvalidRequest
from inhouse.models.resolver import StoreResolver
from inhouse.models.store import ModelStore
from inhouse.tuning.schedule import MAX_NAME, MAX_THRESHOLD, ScheduleService
from inhouse.tuning.versions import VersionService

router = APIRouter(prefix="/v1/fine_tuning")
USE = [guard(Permission.TUNING_USE)]
MANAGE = [guard(Permission.TUNING_MANAGE)]


class Promotion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str = Field(min_length=1, max_length=128)
    force: bool = False


class NewSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_NAME)
    base_job: str = Field(
        min_length=1, max_length=128, description="The job whose line it continues."
    )
    alias: str | None = Field(default=None, min_length=1, max_length=128)
    min_new_feedback: int = Field(default=200, ge=1, le=MAX_THRESHOLD, strict=True)
    min_rating: Literal[-1, 1] = -1  # -1: liked answers and corrected ones; 1: liked only


def _store(request: Request) -> ModelStore:
    resolver = app_state(request).resolver
    if not isinstance(resolver, StoreResolver):
        raise InvalidRequest(
            "this server serves one model file (inhouse serve --model): it has no model store "
            "to hold tuned versions and aliases",
            code="no_model_store",
        )
    return resolver.store


def _versions(request: Request) -> VersionService:
    state = app_state(request)
    return VersionService(state.db, state.audit, _store(request))


def _schedules(request: Request) -> ScheduleService:
    state = app_state(request)
    return ScheduleService(state.db, state.audit, _store(request), state.settings.knowledge)


@router.post("/jobs/{job_id}/promote", dependencies=USE)
async def promote(job_id: str, body: Promotion, request: Request) -> dict[str, Any]:
    service, principal, ip = _versions(request), principal_of(request), client_ip(request)
    change: dict[str, Any] = await anyio.to_thread.run_sync(
        lambda: service.promote(principal, job_id, body.alias, body.force, ip=ip)
    )
    return change


@router.post("/aliases/{alias}/rollback", dependencies=USE)
async def rollback(alias: str, request: Request) -> dict[str, Any]:
    service, principal, ip = _versions(request), principal_of(request), client_ip(request)
    change: dict[str, Any] = await anyio.to_thread.run_sync(
        lambda: service.rollback(principal, alias, ip=ip)
    )
    return change


@router.get("/aliases/{alias}/history", dependencies=USE)
async def history(
    alias: str, request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, Any]:
    service = _versions(request)
    found: dict[str, Any] = await anyio.to_thread.run_sync(service.history, alias, limit)
    return found


@router.get("/schedules", dependencies=MANAGE)
async def list_schedules(request: Request) -> dict[str, Any]:
    rows = await anyio.to_thread.run_sync(_schedules(request).schedules)
    return {"object": "list", "data": rows, "has_more": False}


@router.post("/schedules", dependencies=MANAGE, status_code=201)
async def create_schedule(body: NewSchedule, request: Request) -> dict[str, Any]:
    service, principal, ip = _schedules(request), principal_of(request), client_ip(request)
    made: dict[str, Any] = await anyio.to_thread.run_sync(
        lambda: service.create(
            principal,
            body.name,
            body.base_job,
            body.alias,
            body.min_new_feedback,
            body.min_rating,
            ip=ip,
        )
    )
    return made


@router.delete("/schedules/{name}", dependencies=MANAGE)
async def delete_schedule(name: str, request: Request) -> dict[str, Any]:
    service, principal, ip = _schedules(request), principal_of(request), client_ip(request)
    await anyio.to_thread.run_sync(lambda: service.remove(principal, name, ip=ip))
    return {"object": "fine_tuning.schedule", "name": name, "deleted": True}
