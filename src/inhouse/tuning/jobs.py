"""Fine-tuning jobs as their users see them: create, list, show, cancel, read the log.

A job is a row of TuningJob plus its events. Creating one checks everything that can be
checked before training (the data set is readable by the caller and has examples, the base
model is a llama-architecture GGUF, the name is free, torch is installed) so a job that is
queued can only fail for reasons found while training. A job belongs to its owner; admins
(`tuning.manage`) see and cancel every job, but a job's view never holds data set content.
The runner (`runner.py`) trains queued jobs one at a time.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, false, select, true
from sqlalchemy.orm import Session

from inhouse.audit.trail import AuditTrail
from inhouse.auth.authenticate import local_operator
from inhouse.auth.policy import Permission, Principal, allows
from inhouse.errors import Conflict, InvalidRequest, NotFound
from inhouse.models.names import check_name
from inhouse.models.store import ModelStore
from inhouse.store.db import Database
from inhouse.store.tables import TuningDataset, TuningJob, TuningJobEvent
from inhouse.tuning.access import may_read
from inhouse.tuning.catalog import DatasetNotFound, find
from inhouse.tuning.job_views import event_view, job_view
from inhouse.tuning.lora_export import SUPPORTED_ARCHITECTURES, UnsupportedBaseModel
from inhouse.tuning.trainer.spec import tuning_available

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
FINISHED = (SUCCEEDED, FAILED, CANCELLED)
METHODS = ("lora",)
MAX_EVENTS = 1000
STALE_AFTER_S = 30.0  # a running job whose runner has not beaten for this long is orphaned


class JobNotFound(NotFound):
    code = "fine_tuning_job_not_found"


class TuningUnavailable(InvalidRequest):
    """torch, transformers or peft are not installed: the `tuning` extra is missing."""

    code = "tuning_unavailable"


@dataclass(frozen=True)
class Hyperparameters:
    """What the trainer is asked for; bounds keep one job from taking the machine."""

    epochs: int = 3
    rank: int = 16
    alpha: float | None = None  # None: 2 x rank
    learning_rate: float = 2e-4
    batch_size: int = 8
    max_length: int = 256
    eval_split: float = 0.1  # used when the data set has no eval split of its own
    seed: int = 0

    def check(self) -> Hyperparameters:
        bounds: dict[str, tuple[float, float]] = {
            "epochs": (1, 100),
            "rank": (1, 256),
            "alpha": (0.01, 4096),
            "learning_rate": (1e-7, 1.0),
            "batch_size": (1, 256),
            "max_length": (16, 8192),
            "eval_split": (0.0, 0.5),
            "seed": (0, 2**31 - 1),
        }
        if self.alpha is None:
            return replace(self, alpha=2.0 * self.rank).check()
        for field, (low, high) in bounds.items():
            value = getattr(self, field)
            if not low <= value <= high:
                raise InvalidRequest(f"{field} must be {low:g} to {high:g}", param=field)
        return self


@dataclass(frozen=True)
class JobRequest:
    """A new job: train `base` on `dataset`; `continue_from`: a succeeded job whose adapter
    is the starting point (the next version of the same model)."""

    base: str
    dataset: str
    name: str | None = None
    method: str = "lora"
    hyperparameters: Hyperparameters = Hyperparameters()
    scorer: str = "contains"
    continue_from: str | None = None
    eval_dataset: str | None = None  # held-out examples from another data set


class JobService:
    def __init__(self, db: Database, audit: AuditTrail, models: ModelStore) -> None:
        self.db = db
        self.audit = audit
        self.models = models

    def create(
        self,
        principal: Principal,
        request: JobRequest,
        ip: str | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """Check and queue a job; audited (as `actor`, default the principal's). Raises before
        anything is written on bad input."""
        actor = actor or principal.actor
        missing = tuning_available()
        if missing is not None:
            raise TuningUnavailable(missing)
        if request.method not in METHODS:
            raise InvalidRequest(
                f"method {request.method!r} is not supported; use: {', '.join(METHODS)}",
                param="method",
            )
        hyper = request.hyperparameters.check()
        base = self._base_model(request.base)
        public_id = "ftjob-" + secrets.token_hex(12)
        name = check_name(request.name) if request.name else f"{base}-{public_id[6:14]}"
        if name.startswith("ftjob-"):
            raise InvalidRequest(
                "a job's name may not start with ftjob- (its ids do)", param="name"
            )
        with self.db.write() as session:
            dataset = _readable_dataset(session, principal, request.dataset)
            held_out = (
                _readable_dataset(session, principal, request.eval_dataset, need_train=False)
                if request.eval_dataset
                else None
            )
            parent = self._parent(session, principal, request.continue_from, base)
            self._check_free(session, name)
            job = TuningJob(
                public_id=public_id,
                name=name,
                owner_user_id=principal.user_id,
                created_by=actor,
                base_model=base,
                parent_job_id=parent.id if parent else None,
                dataset_id=dataset.id,
                dataset_name=dataset.name,
                eval_dataset_id=held_out.id if held_out else None,
                method=request.method,
                hyperparameters=asdict(hyper),
                scorer=request.scorer,
                status=QUEUED,
                created_at=time.time(),
            )
            session.add(job)
            session.flush()
            add_event(session, job.id, f"queued: train {base} on {dataset.name}")
            detail = {"id": public_id, "base": base, "dataset": dataset.name} | asdict(hyper)
            self.audit.record(session, actor, "tuning.job.create", name, detail, ip)
            return job_view(session, job)

    def jobs(
        self, principal: Principal, limit: int = 20, after: str | None = None
    ) -> list[dict[str, Any]]:
        """The caller's jobs (a manager: every job), newest first; `after`: only those older
        than that job (OpenAI's cursor)."""
        with self.db.read() as session:
            query = select(TuningJob).order_by(TuningJob.created_at.desc(), TuningJob.id.desc())
            if not _manages(principal):
                query = query.where(_owned(principal))
            if after is not None:
                cursor = visible_job(session, principal, after)
                query = query.where(
                    (TuningJob.created_at < cursor.created_at)
                    | ((TuningJob.created_at == cursor.created_at) & (TuningJob.id < cursor.id))
                )
            return [job_view(session, job) for job in session.scalars(query.limit(limit))]

    def get(self, principal: Principal, ident: str) -> dict[str, Any]:
        with self.db.read() as session:
            return job_view(session, visible_job(session, principal, ident))

    def cancel(
        self,
        principal: Principal,
        ident: str,
        ip: str | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """A queued job is cancelled at once; a running one when its runner sees the request
        (within a second or two). A finished job is a conflict."""
        with self.db.write() as session:
            job = visible_job(session, principal, ident)
            if job.status in FINISHED:
                raise Conflict(f"job {job.name!r} has already {job.status}")
            job.cancel_requested = True
            orphaned = (
                job.heartbeat_at is not None and job.heartbeat_at < time.time() - STALE_AFTER_S
            )
            if job.status == QUEUED or orphaned:  # no runner will see the request
                job.status, job.finished_at = CANCELLED, time.time()
                add_event(session, job.id, "cancelled")
            else:
                add_event(session, job.id, "cancellation requested")
            who = actor or principal.actor
            self.audit.record(session, who, "tuning.job.cancel", job.name, None, ip)
            return job_view(session, job)

    def row_id(self, public_id: str) -> int:
        """The job's row id (for the runner), by its public id or name; 404 if none."""
        with self.db.read() as session:
            return visible_job(session, local_operator(), public_id).id

    def events(
        self, principal: Principal, ident: str, after: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The job's events with an id above `after`, oldest first."""
        if not 1 <= limit <= MAX_EVENTS:
            raise InvalidRequest(f"limit must be 1 to {MAX_EVENTS}", param="limit")
        with self.db.read() as session:
            job = visible_job(session, principal, ident)
            rows = session.scalars(
                select(TuningJobEvent)
                .where(TuningJobEvent.job_id == job.id, TuningJobEvent.id > after)
                .order_by(TuningJobEvent.id)
                .limit(limit)
            )
            return [event_view(job, row) for row in rows]

    def recent_events(
        self, principal: Principal, ident: str, before: int | None = None, limit: int = 20
    ) -> list[dict[str, Any]]:
        """The job's events newest first, those with an id below `before` (OpenAI's order,
        whose `after` cursor pages towards older events)."""
        if not 1 <= limit <= MAX_EVENTS:
            raise InvalidRequest(f"limit must be 1 to {MAX_EVENTS}", param="limit")
        with self.db.read() as session:
            job = visible_job(session, principal, ident)
            query = select(TuningJobEvent).where(TuningJobEvent.job_id == job.id)
            if before is not None:
                query = query.where(TuningJobEvent.id < before)
            rows = session.scalars(query.order_by(TuningJobEvent.id.desc()).limit(limit))
            return [event_view(job, row) for row in rows]

    def _base_model(self, name: str) -> str:
        """The stored model `name` resolves to; it must be a llama GGUF model, not an adapter set
        (a tuned version is continued with `continue_from`)."""
        record = self.models.resolve(name)
        if record.kind != "model":
            raise InvalidRequest(
                f"{name!r} is an adapter set; train on its base {record.base!r}, and pass "
                "continue_from to start from a tuned version",
                param="model",
            )
        if record.model.architecture not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedBaseModel(
                f"{record.name!r} is a {record.model.architecture!r} model; tuning supports "
                f"{', '.join(SUPPORTED_ARCHITECTURES)}-architecture GGUF models "
                "(e.g. SmolLM2, Llama 2/3)"
            )
        return record.name

    def _parent(
        self, session: Session, principal: Principal, ident: str | None, base: str
    ) -> TuningJob | None:
        if ident is None:
            return None
        parent = visible_job(session, principal, ident)
        if parent.status != SUCCEEDED:
            raise InvalidRequest(f"job {parent.name!r} has not succeeded", param="continue_from")
        if parent.base_model != base:
            raise InvalidRequest(
                f"job {parent.name!r} tuned {parent.base_model!r}, not {base!r}",
                param="continue_from",
            )
        return parent

    def _check_free(self, session: Session, name: str) -> None:
        taken = session.scalar(select(TuningJob.id).where(TuningJob.name == name))
        if taken is not None or name in self.models.names() or name in self.models.aliases():
            raise Conflict(f"the name {name!r} is taken (by a job, a model or an alias)")


def visible_job(session: Session, principal: Principal, ident: str) -> TuningJob:
    """The job named `ident` or with that id, if the caller owns it or manages jobs; else 404."""
    column = TuningJob.public_id if ident.startswith("ftjob-") else TuningJob.name
    query = select(TuningJob).where(column == ident)
    if not _manages(principal):
        query = query.where(_owned(principal))
    job = session.scalar(query)
    if job is None:
        raise JobNotFound(f"no fine-tuning job {ident!r}")
    return job


def add_event(
    session: Session,
    job_id: int,
    message: str,
    *,
    level: str = "info",
    data: dict[str, Any] | None = None,
) -> None:
    session.add(
        TuningJobEvent(
            job_id=job_id,
            created_at=time.time(),
            level=level,
            type="metrics" if data is not None else "message",
            message=message,
            data=data,
        )
    )


def _readable_dataset(
    session: Session, principal: Principal, ident: str, *, need_train: bool = True
) -> TuningDataset:
    dataset = find(session, ident)
    if (
        session.scalar(
            select(TuningDataset.id).where(TuningDataset.id == dataset.id, may_read(principal))
        )
        is None
    ):
        raise DatasetNotFound(f"no data set {ident!r}")
    if need_train and dataset.train_count == 0:
        raise InvalidRequest(f"data set {dataset.name!r} has no training examples")
    return dataset


def _owned(principal: Principal) -> ColumnElement[bool]:
    if principal.via == "local":
        return true()
    if principal.user_id is None:
        return false()
    return TuningJob.owner_user_id == principal.user_id


def _manages(principal: Principal) -> bool:
    return allows(principal, Permission.TUNING_MANAGE)
