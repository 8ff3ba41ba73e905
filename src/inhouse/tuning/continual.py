"""Continual learning, the running part: what `run_due_schedules` does for each schedule.

For each enabled schedule, in this order:
1. decide on its last job: once it has succeeded, promote it to the schedule's alias if its
   evaluation passed the gate, else record on the job and in the audit trail that it was not
   promoted (a decision is made once: it is marked by an event on the job);
2. start the next version: when `min_new_feedback` usable rated answers (see
   `sources.kept_feedback`) arrived since the last run and no job of the line is queued or
   running, build a data set of exactly those answers and queue a job that continues from the
   newest succeeded version, with its base, hyperparameters and scorer.
The feedback a run takes is claimed first (compare-and-set on `last_feedback_id`), so two
callers never start two jobs; a run that then fails is audited and its feedback is not
retried (build a data set from it by hand). The jobs and data sets belong to the owner of
the base job. Nothing raises out of `run_due`: one broken schedule stops no other.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from inhouse.audit.trail import AuditTrail
from inhouse.auth.authenticate import local_operator
from inhouse.auth.policy import Principal, Role
from inhouse.config import KnowledgeSettings
from inhouse.errors import InhouseError, NotFound
from inhouse.models.store import ModelStore
from inhouse.store.db import Database
from inhouse.store.tables import (
    Feedback,
    TuningDataset,
    TuningJob,
    TuningJobEvent,
    TuningSchedule,
    User,
)
from inhouse.tuning.jobs import (
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Hyperparameters,
    JobRequest,
    JobService,
)
from inhouse.tuning.service import DatasetService, Options
from inhouse.tuning.sources import kept_feedback
from inhouse.tuning.versions import VersionService, verdict

log = logging.getLogger(__name__)

PROMOTED, KEPT = "promoted", "not promoted"


@dataclass(frozen=True)
class _Due:
    """A schedule as read at the start of its run."""

    id: int
    name: str
    base_job: str
    alias: str | None
    threshold: int
    min_rating: int
    last_feedback_id: int
    runs: int
    last_job: str | None

    @property
    def actor(self) -> str:
        return f"schedule:{self.name}"


class ScheduleRunner:
    def __init__(
        self, db: Database, audit: AuditTrail, models: ModelStore, knowledge: KnowledgeSettings
    ) -> None:
        self.db = db
        self.audit = audit
        self.models = models
        self.knowledge = knowledge

    def run_due(self) -> list[dict[str, Any]]:
        """Run every enabled schedule once; what each did (or its error). Never raises."""
        try:
            with self.db.read() as session:
                query = select(TuningSchedule.id).where(TuningSchedule.enabled.is_(True))
                ids = list(session.scalars(query.order_by(TuningSchedule.id)))
        except Exception:
            log.exception("could not read the tuning schedules")
            return []
        outcomes = []
        for schedule_id in ids:
            try:
                outcomes.append(self._run(schedule_id))
            except Exception as exc:  # this schedule's fault; the others still run
                log.exception("tuning schedule %s failed", schedule_id)
                outcomes.append({"schedule_id": schedule_id, "error": f"{exc}"})
        return outcomes

    def _run(self, schedule_id: int) -> dict[str, Any]:
        due = self._read(schedule_id)
        outcome: dict[str, Any] = {"schedule": due.name}
        decision = self._decide(due)
        if decision is not None:
            outcome["decision"] = decision
        started = self._start(due)
        if started is not None:
            outcome["started"] = started
        return outcome

    def _read(self, schedule_id: int) -> _Due:
        with self.db.read() as session:
            row = session.get(TuningSchedule, schedule_id)
            if row is None:
                raise NotFound(f"schedule {schedule_id} was removed")
            return _Due(
                row.id,
                row.name,
                row.base_job,
                row.alias,
                row.min_new_feedback,
                row.min_rating,
                row.last_feedback_id,
                row.runs,
                row.last_job,
            )

    # ----- deciding on the last version --------------------------------------------------

    def _decide(self, due: _Due) -> dict[str, Any] | None:
        """Promote the last job if it succeeded and passed the gate; record it either way."""
        if due.alias is None or due.last_job is None:
            return None
        with self.db.read() as session:
            job = session.scalar(select(TuningJob).where(TuningJob.name == due.last_job))
            if job is None or job.status != SUCCEEDED or not job.fine_tuned_model:
                return None
            if _decided(session, job.id, due.name):
                return None
            job_id, job_name, model = job.id, job.name, job.fine_tuned_model
            gate = verdict(job.evaluation)
        if self.models.aliases().get(due.alias) == model:
            return None  # promoted by hand already
        reasons, promoted = list(gate.reasons), False
        if gate.passed:
            try:
                versions = VersionService(self.db, self.audit, self.models)
                versions.promote(local_operator(), job_name, due.alias, actor=due.actor)
                promoted = True
            except InhouseError as exc:
                reasons = [f"the promotion failed: {exc.message}"]
        self._mark(due, job_id, job_name, promoted, reasons)
        return {"job": job_name, "alias": due.alias, "promoted": promoted, "reasons": reasons}

    def _mark(
        self, due: _Due, job_id: int, job_name: str, promoted: bool, reasons: list[str]
    ) -> None:
        decision = PROMOTED if promoted else KEPT
        said = f": {'; '.join(reasons)}" if reasons and not promoted else ""
        words = f"{decision} to {due.alias!r}{said}"
        data = {"schedule": due.name, "decision": decision, "alias": due.alias}
        with self.db.write() as session:
            session.add(
                TuningJobEvent(
                    job_id=job_id,
                    created_at=time.time(),
                    level="info" if promoted else "warn",
                    type="message",
                    message=f"schedule {due.name}: {words}",
                    data=data | {"reasons": reasons},
                )
            )
            if not promoted:
                detail = {"job": job_name, "alias": due.alias, "reasons": reasons}
                self.audit.record(
                    session, due.actor, "tuning.schedule.not_promoted", due.name, detail
                )

    # ----- starting the next version -----------------------------------------------------

    def _start(self, due: _Due) -> dict[str, Any] | None:
        """Queue the next version if enough new feedback arrived and the line is idle."""
        with self.db.read() as session:
            line = _line(session, due.base_job)
            if not line or any(job.status in (QUEUED, RUNNING) for job in line):
                return None
            done = [job for job in line if job.status == SUCCEEDED]
            if not done:
                return None
            parent = max(done, key=lambda job: (job.finished_at or 0.0, job.id))
            count, upto = session.execute(
                select(func.count(), func.max(Feedback.id)).where(
                    Feedback.id > due.last_feedback_id, kept_feedback(due.min_rating)
                )
            ).one()
            if count < due.threshold or upto is None:
                return None
            owner = _owner(session, parent.owner_user_id)
            run = due.runs + 1
            job_name = _free(session, self.models, f"{due.name}-{run}")
            dataset_name = _free(session, self.models, f"{due.name}-{run}-feedback")
            request = JobRequest(
                base=parent.base_model,
                dataset=dataset_name,
                name=job_name,
                hyperparameters=_hyperparameters(parent.hyperparameters),
                scorer=parent.scorer,
                continue_from=parent.name,
            )
        if not self._claim(due, int(upto)):
            return None
        return self._queue(due, owner, request, int(upto))

    def _claim(self, due: _Due, upto: int) -> bool:
        """Take the feedback up to `upto` for this run, unless another caller just did."""
        with self.db.write() as session:
            taken = session.execute(
                update(TuningSchedule)
                .where(
                    TuningSchedule.id == due.id,
                    TuningSchedule.last_feedback_id == due.last_feedback_id,
                )
                .values(last_feedback_id=upto, runs=due.runs + 1, last_run_at=time.time())
            )
            return bool(taken.rowcount == 1)  # type: ignore[attr-defined]

    def _queue(self, due: _Due, owner: Principal, request: JobRequest, upto: int) -> dict[str, Any]:
        """Build the data set and queue the job; a failure is audited and undone."""
        datasets = DatasetService(self.db, self.audit, self.knowledge)
        ids: dict[str, Any] = {"after_id": due.last_feedback_id, "upto_id": upto}
        made: dict[str, Any] | None = None
        try:
            made = datasets.from_feedback_range(
                owner,
                request.dataset,
                **ids,
                min_rating=due.min_rating,
                options=Options(actor=due.actor),
            )
            job = JobService(self.db, self.audit, self.models).create(owner, request)
        except Exception as exc:  # audited and undone; the next run needs new feedback
            error = exc.message if isinstance(exc, InhouseError) else f"{type(exc).__name__}: {exc}"
            if made is not None:
                datasets.remove(local_operator(), made["id"], actor=due.actor)
            with self.db.write() as session:
                failure = ids | {"error": error}
                self.audit.record(session, due.actor, "tuning.schedule.failed", due.name, failure)
            log.warning("tuning schedule %s could not start a run: %s", due.name, error)
            return {"error": error} | ids
        with self.db.write() as session:
            schedule = session.get(TuningSchedule, due.id)
            if schedule is not None:
                schedule.last_job = job["name"]
            detail = ids | {"job": job["name"], "dataset": made["name"]}
            detail["from"] = request.continue_from
            self.audit.record(session, due.actor, "tuning.schedule.run", due.name, detail)
        return {"job": job["name"], "dataset": made["name"], "continues": request.continue_from}


def _line(session: Session, base_job: str) -> list[TuningJob]:
    """The base job and every job continued from one of the line, at any depth."""
    root = session.scalar(select(TuningJob).where(TuningJob.name == base_job))
    if root is None:
        return []
    line, frontier = [root], [root.id]
    while frontier:
        children = list(
            session.scalars(select(TuningJob).where(TuningJob.parent_job_id.in_(frontier)))
        )
        line += children
        frontier = [child.id for child in children]
    return line


def _decided(session: Session, job_id: int, schedule: str) -> bool:
    """Whether this schedule already recorded its decision on the job."""
    query = select(TuningJobEvent.data).where(
        TuningJobEvent.job_id == job_id,
        TuningJobEvent.message.startswith(f"schedule {schedule}: ", autoescape=True),
    )
    return any(
        isinstance(data, dict) and data.get("schedule") == schedule and "decision" in data
        for data in session.scalars(query)
    )


def _owner(session: Session, user_id: int | None) -> Principal:
    """Who the new version belongs to: the line's owner (None: the operator)."""
    user = session.get(User, user_id) if user_id is not None else None
    if user is None:
        return local_operator()
    return Principal(user_id=user.id, user_name=user.name, role=Role(user.role), via="schedule")


def _free(session: Session, models: ModelStore, name: str) -> str:
    """`name`, or `name` with a random suffix when a job, data set or model has it."""
    taken = (
        session.scalar(select(TuningJob.id).where(TuningJob.name == name)) is not None
        or session.scalar(select(TuningDataset.id).where(TuningDataset.name == name)) is not None
        or name in models.names()
    )
    return f"{name}-{secrets.token_hex(3)}" if taken else name


def _hyperparameters(stored: dict[str, Any]) -> Hyperparameters:
    known = {field.name for field in dataclasses.fields(Hyperparameters)}
    return Hyperparameters(**{k: v for k, v in stored.items() if k in known})
