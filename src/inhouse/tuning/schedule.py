"""Continual learning schedules: "when N new rated answers exist, retrain from the last
version and promote it if the gate passes".

A schedule follows a line of versions: its `base_job` and every job continued from a job of
the line. Schedules are for those who manage tuning. `run_due_schedules`, called in a loop by
`inhouse serve`, runs each enabled one (`continual.py`); feedback given before a schedule
exists is not new to it.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inhouse.audit.trail import AuditTrail
from inhouse.auth.policy import Permission, Principal, require
from inhouse.config import KnowledgeSettings
from inhouse.errors import Conflict, InvalidRequest, NotFound
from inhouse.models.names import check_name
from inhouse.models.store import ModelStore
from inhouse.store.db import Database
from inhouse.store.tables import Feedback, TuningSchedule
from inhouse.tuning.continual import ScheduleRunner
from inhouse.tuning.jobs import visible_job
from inhouse.tuning.sources import kept_feedback

MAX_NAME = 40  # leaves room for the "-<run>-feedback-<hex>" of the data sets it makes (64)
MAX_THRESHOLD = 1_000_000


class ScheduleNotFound(NotFound):
    code = "schedule_not_found"


class ScheduleService:
    def __init__(
        self, db: Database, audit: AuditTrail, models: ModelStore, knowledge: KnowledgeSettings
    ) -> None:
        self.db = db
        self.audit = audit
        self.models = models
        self.knowledge = knowledge

    # ----- managing ----------------------------------------------------------------------

    def create(
        self,
        principal: Principal,
        name: str,
        base_job: str,
        alias: str | None,
        min_new_feedback: int,
        min_rating: int = -1,  # -1: liked answers and corrected ones; 1: liked only
        actor: str | None = None,
        ip: str | None = None,
    ) -> dict[str, Any]:
        """A schedule over `base_job`'s line; feedback given before it exists is not new."""
        require(principal, Permission.TUNING_MANAGE)
        check_name(name, "schedule name")
        if len(name) > MAX_NAME:
            raise InvalidRequest(f"a schedule name has at most {MAX_NAME} characters", param="name")
        if not 1 <= min_new_feedback <= MAX_THRESHOLD:
            raise InvalidRequest(
                f"min_new_feedback must be 1 to {MAX_THRESHOLD}", param="min_new_feedback"
            )
        kept_feedback(min_rating)  # checks it
        if alias is not None:
            self._check_alias(alias)
        who = actor or principal.actor
        with self.db.write() as session:
            job = visible_job(session, principal, base_job)
            if session.scalar(select(TuningSchedule.id).where(TuningSchedule.name == name)):
                raise Conflict(f"a schedule named {name!r} exists already")
            schedule = TuningSchedule(
                name=name,
                base_job=job.name,
                alias=alias,
                min_new_feedback=min_new_feedback,
                min_rating=min_rating,
                last_feedback_id=session.scalar(select(func.max(Feedback.id))) or 0,
                created_by=who,
                created_at=time.time(),
            )
            session.add(schedule)
            session.flush()
            view = _view(session, schedule)
            detail = {k: view[k] for k in ("base_job", "alias", "min_new_feedback", "min_rating")}
            self.audit.record(session, who, "tuning.schedule.create", name, detail, ip)
            return view

    def schedules(self) -> list[dict[str, Any]]:
        """Every schedule with the usable feedback waiting for its next run."""
        with self.db.read() as session:
            rows = session.scalars(select(TuningSchedule).order_by(TuningSchedule.name))
            return [_view(session, row) for row in rows]

    def remove(
        self, principal: Principal, name: str, actor: str | None = None, ip: str | None = None
    ) -> dict[str, Any]:
        """Delete a schedule; its jobs, versions and alias stay."""
        require(principal, Permission.TUNING_MANAGE)
        with self.db.write() as session:
            schedule = session.scalar(select(TuningSchedule).where(TuningSchedule.name == name))
            if schedule is None:
                raise ScheduleNotFound(f"no schedule named {name!r}")
            view = _view(session, schedule)
            session.delete(schedule)
            self.audit.record(session, actor or principal.actor, "tuning.schedule.delete", name)
            return view

    def _check_alias(self, alias: str) -> None:
        check_name(alias, "alias")
        if alias in self.models.names() and alias not in self.models.aliases():
            raise InvalidRequest(f"{alias!r} is a model; an alias may not shadow it", param="alias")


def _view(session: Session, schedule: TuningSchedule) -> dict[str, Any]:
    pending = session.scalar(
        select(func.count()).where(
            Feedback.id > schedule.last_feedback_id, kept_feedback(schedule.min_rating)
        )
    )
    return {
        "object": "fine_tuning.schedule",
        "name": schedule.name,
        "base_job": schedule.base_job,
        "alias": schedule.alias,
        "min_new_feedback": schedule.min_new_feedback,
        "min_rating": schedule.min_rating,
        "enabled": schedule.enabled,
        "new_feedback": pending or 0,
        "last_feedback_id": schedule.last_feedback_id,
        "runs": schedule.runs,
        "last_run_at": int(schedule.last_run_at) if schedule.last_run_at else None,
        "last_job": schedule.last_job,
        "created_by": schedule.created_by,
        "created_at": int(schedule.created_at),
    }


def run_due_schedules(
    db: Database, audit: AuditTrail, models: ModelStore, knowledge: KnowledgeSettings
) -> list[dict[str, Any]]:
    """Run every enabled schedule once (the serve loop's entry point): what each did, or its
    error. Never raises; call it from a worker thread, every minute or so."""
    return ScheduleRunner(db, audit, models, knowledge).run_due()
