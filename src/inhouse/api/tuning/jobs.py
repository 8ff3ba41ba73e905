"""/v1/fine_tuning/jobs in OpenAI's shape: create, list, retrieve, cancel, events; and
inhouse's evaluate (the gate again, through this server's engines).

The body is OpenAI's (`model`, `training_file`, `hyperparameters` or `method.supervised`,
`suffix`, `seed`) plus inhouse's optional `name`, `lora`, `eval_split`, `scorer` and
`continue_from`; `JobService` checks everything it can before a job is queued. A job is
named by its id (ftjob-...) or its inhouse name. Members see only their own jobs (anyone
else's is a 404); managers (`tuning.manage`) see every job. `?stream=true` on the events
route follows a job as Server-Sent Events until it has finished.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, PlainValidator

from inhouse.api.deps import app_state
from inhouse.api.guard import client_ip, guard, principal_of
from inhouse.auth.policy import Permission, Principal
from inhouse.errors import Conflict, InhouseError, InvalidRequest
from inhouse.models.resolver import StoreResolver
from inhouse.tuning.evaluate import PoolAnswerer
from inhouse.tuning.gate import served_evaluator
from inhouse.tuning.jobs import FINISHED, MAX_EVENTS, Hyperparameters, JobRequest, JobService
from inhouse.tuning.runner import JobRunner

router = APIRouter(prefix="/v1/fine_tuning/jobs")
USE = [guard(Permission.TUNING_USE)]
SUPERVISED = "supervised"
POLL_S = 0.5  # how often a followed job's events are read from the store
DONE = b"data: [DONE]\n\n"
EVENT_PREFIX = "ftevent-"
# the service's names of the checked fields -> where they are in the request body
WIRE_PARAMS = {
    "epochs": "hyperparameters.n_epochs",
    "batch_size": "hyperparameters.batch_size",
    "learning_rate": "hyperparameters.learning_rate_multiplier",
    "rank": "lora.rank",
    "alpha": "lora.alpha",
    "max_length": "lora.max_length",
}


def _count_or_auto(value: Any) -> Any:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError('must be a whole number or "auto"')


def _positive_or_auto(value: Any) -> Any:
    if value == "auto":
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise ValueError('must be a number above 0 or "auto"')


Count = Annotated[int, Field(strict=True)]
CountOrAuto = Annotated[int | Literal["auto"], PlainValidator(_count_or_auto)]
PositiveOrAuto = Annotated[float | Literal["auto"], PlainValidator(_positive_or_auto)]


class WireHyperparameters(BaseModel):
    """OpenAI's hyperparameters; "auto" (or leaving one out) takes inhouse's default."""

    model_config = ConfigDict(extra="forbid")

    n_epochs: CountOrAuto | None = None
    batch_size: CountOrAuto | None = None
    learning_rate_multiplier: PositiveOrAuto | None = None


class Supervised(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: WireHyperparameters | None = None


class Method(BaseModel):
    # other methods' own fields (dpo, reinforcement) are allowed here so that the type
    # check below can name what is supported
    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1, max_length=32)
    supervised: Supervised | None = None


class Lora(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rank: Count | None = None
    alpha: float | None = None
    max_length: Count | None = None


class NewJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=128)
    training_file: str = Field(min_length=1, max_length=128)
    validation_file: str | None = Field(default=None, max_length=128)
    hyperparameters: WireHyperparameters | None = None
    method: Method | None = None
    suffix: str | None = Field(default=None, min_length=1, max_length=64)
    seed: Count | None = None
    metadata: dict[str, str] | None = None
    name: str | None = Field(default=None, min_length=1, max_length=128)
    lora: Lora | None = None
    eval_split: float | None = None
    scorer: str | None = Field(default=None, min_length=1, max_length=512)
    continue_from: str | None = Field(default=None, min_length=1, max_length=128)


def _service(request: Request) -> JobService:
    """The job service on the server's model store; a one-file server (`--model`) has none."""
    state = app_state(request)
    if not isinstance(state.resolver, StoreResolver):
        raise InvalidRequest(
            "this server serves one model file (inhouse serve --model): fine-tuning needs "
            "the model store, to train on its models and to serve the tuned ones",
            code="no_model_store",
        )
    return JobService(state.db, state.audit, state.resolver.store)


def job_request(body: NewJob) -> JobRequest:
    """The service's request from OpenAI's body; what inhouse cannot honour is refused."""
    if body.metadata:
        raise InvalidRequest("inhouse does not keep job metadata", param="metadata")
    wire = _wire_hyperparameters(body)
    defaults, lora = Hyperparameters(), body.lora or Lora()
    multiplier = _given(wire.learning_rate_multiplier)
    hyper = Hyperparameters(
        epochs=_given(wire.n_epochs, defaults.epochs),
        batch_size=_given(wire.batch_size, defaults.batch_size),
        learning_rate=defaults.learning_rate * (1.0 if multiplier is None else multiplier),
        rank=_given(lora.rank, defaults.rank),
        alpha=_given(lora.alpha, defaults.alpha),
        max_length=_given(lora.max_length, defaults.max_length),
        eval_split=_given(body.eval_split, defaults.eval_split),
        seed=_given(body.seed, defaults.seed),
    )
    name = body.name
    if name is None and body.suffix is not None:
        name = f"{body.model}-{body.suffix}"
    return JobRequest(
        base=body.model,
        dataset=body.training_file,
        name=name,
        hyperparameters=hyper,
        scorer=body.scorer or JobRequest.scorer,
        continue_from=body.continue_from,
        eval_dataset=body.validation_file,
    )


def _wire_hyperparameters(body: NewJob) -> WireHyperparameters:
    """The hyperparameters from `method.supervised` or (OpenAI's older place) the top level."""
    method = body.method
    if method is None:
        return body.hyperparameters or WireHyperparameters()
    if method.type != SUPERVISED:
        raise InvalidRequest(
            f"method {method.type!r} is not supported; inhouse trains {SUPERVISED!r} "
            "(a LoRA adapter on chat or text examples)",
            param="method.type",
        )
    given = method.supervised.hyperparameters if method.supervised else None
    if given is not None and body.hyperparameters is not None:
        raise InvalidRequest(
            "give the hyperparameters once: in method.supervised or at the top level",
            param="hyperparameters",
        )
    return given or body.hyperparameters or WireHyperparameters()


def _given(value: Any, default: Any = None) -> Any:
    """`value`, or `default` when it is left out or "auto"."""
    return default if value is None or value == "auto" else value


def _create(service: JobService, principal: Principal, request: JobRequest, ip: str | None) -> Any:
    """Create the job; a refused field is named as the request body names it."""
    try:
        return service.create(principal, request, ip)
    except InvalidRequest as exc:
        if exc.param not in WIRE_PARAMS:
            raise
        raise InvalidRequest(exc.message, param=WIRE_PARAMS[exc.param], code=exc.code) from None


@router.post("", dependencies=USE)
async def create_job(body: NewJob, request: Request) -> dict[str, Any]:
    principal, ip = principal_of(request), client_ip(request)
    app_state(request).governance.check_model(principal, body.model)
    wanted, service = job_request(body), _service(request)
    job: dict[str, Any] = await anyio.to_thread.run_sync(_create, service, principal, wanted, ip)
    return job


@router.get("", dependencies=USE)
async def list_jobs(
    request: Request,
    after: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """The caller's jobs (a manager: every job), newest first, OpenAI's cursor page."""
    service, principal = _service(request), principal_of(request)
    rows = await anyio.to_thread.run_sync(lambda: service.jobs(principal, limit + 1, after))
    return _page(rows, limit)


@router.get("/{job_id}", dependencies=USE)
async def retrieve_job(job_id: str, request: Request) -> dict[str, Any]:
    service, principal = _service(request), principal_of(request)
    job: dict[str, Any] = await anyio.to_thread.run_sync(service.get, principal, job_id)
    return job


@router.post("/{job_id}/cancel", dependencies=USE)
async def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
    """A queued job is cancelled at once; a running one within a second or two."""
    service, principal, ip = _service(request), principal_of(request), client_ip(request)
    job: dict[str, Any] = await anyio.to_thread.run_sync(service.cancel, principal, job_id, ip)
    return job


@router.post("/{job_id}/evaluate", dependencies=USE)
async def evaluate_job(job_id: str, request: Request) -> dict[str, Any]:
    """Evaluate a succeeded job again (the gate: base vs tuned on its held-out examples,
    through this server's engines); the result is stored on the job and returned."""
    state, principal = app_state(request), principal_of(request)
    service = _service(request)
    job: dict[str, Any] = await anyio.to_thread.run_sync(service.get, principal, job_id)
    if job["status"] != "succeeded":
        raise Conflict(f"job {job['name']!r} has not succeeded ({job['status']})")
    settings = state.settings
    answerer = PoolAnswerer(state.pool, asyncio.get_running_loop())
    runner = JobRunner(
        state.db,
        state.audit,
        service.models,
        settings.home,
        settings.tuning,
        served_evaluator(state.resolver, answerer, settings),
    )
    row_id = await anyio.to_thread.run_sync(service.row_id, job["id"])
    evaluation: dict[str, Any] = await anyio.to_thread.run_sync(runner.evaluate, row_id)
    return {"object": "fine_tuning.job.evaluation", "job": job["id"]} | evaluation


@router.get("/{job_id}/events", dependencies=USE, response_model=None)
async def list_events(
    job_id: str,
    request: Request,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = 20,
    stream: bool = False,
) -> dict[str, Any] | StreamingResponse:
    """OpenAI's page of events, newest first (`after`: older than that event); with
    `stream=true`, the events after `after`, oldest first, as they happen, then the job."""
    service, principal = _service(request), principal_of(request)
    cursor = _event_seq(after)
    if stream:
        await anyio.to_thread.run_sync(service.get, principal, job_id)  # a 404 before the stream
        events = follow(request, service, principal, job_id, cursor or 0)
        return StreamingResponse(events, media_type="text/event-stream")
    rows = await anyio.to_thread.run_sync(
        lambda: service.recent_events(principal, job_id, cursor, limit + 1)
    )
    return _page(rows, limit)


def _page(rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """OpenAI's list object from up to `limit` + 1 rows (the extra one says there are more)."""
    return {"object": "list", "data": rows[:limit], "has_more": len(rows) > limit}


def _event_seq(after: str | None) -> int | None:
    """The event number in an event id (ftevent-12, or 12)."""
    if after is None:
        return None
    digits = after.removeprefix(EVENT_PREFIX)
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise InvalidRequest(f"after must be an event id ({EVENT_PREFIX}N)", param="after")
    return int(digits)


async def follow(
    request: Request, service: JobService, principal: Principal, job_id: str, after: int
) -> AsyncIterator[bytes]:
    """The job's events after `after` as they are written, then the finished job and [DONE];
    the store is read off the event loop every POLL_S until the job ends or the client goes."""
    try:
        while True:
            job = await anyio.to_thread.run_sync(service.get, principal, job_id)
            events = await anyio.to_thread.run_sync(
                service.events, principal, job_id, after, MAX_EVENTS
            )
            for event in events:
                after = event["seq"]
                yield _sse(event)
            # the final status and its event are written together, before this read of events
            if job["status"] in FINISHED and len(events) < MAX_EVENTS:
                yield _sse(job)
                break
            # Starlette ends a stream on a disconnect only under ASGI spec < 2.4: check here too
            if await request.is_disconnected():
                return
            await anyio.sleep(POLL_S)
    except InhouseError as exc:
        yield _sse({"error": {"message": exc.message, "type": exc.type, "code": exc.code}})
    yield DONE


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"
