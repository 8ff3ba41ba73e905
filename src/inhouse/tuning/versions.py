"""Serving tuned versions under an alias: promote (behind the evaluation gate), rollback, history.

An alias (`assistant`) is a name in the model store that clients call; promoting a succeeded
job points it at the job's tuned model, and the server follows at its next request (the
resolver reads the manifest per request). Promotion is refused unless the job's evaluation
passed the gate; `force` overrides, and the audit entry says it was forced and why the gate
failed. Every move is a TuningAliasChange row: `rollback` undoes the newest promote still in
force, one step per call, by walking those rows as a stack. Retargeting an alias that points
at someone else's model is for those who manage tuning or models.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inhouse.audit.trail import AuditTrail
from inhouse.auth.policy import Permission, Principal, allows
from inhouse.errors import Conflict, Forbidden, InhouseError, InvalidRequest, NotFound
from inhouse.models.names import check_name
from inhouse.models.store import ModelStore
from inhouse.store.db import Database
from inhouse.store.tables import TuningAliasChange, TuningJob
from inhouse.tuning.jobs import SUCCEEDED, add_event, visible_job

log = logging.getLogger(__name__)

PROMOTE, ROLLBACK = "promote", "rollback"


class GateNotPassed(Conflict):
    """The job's evaluation did not pass the gate and `force` was not given."""

    code = "evaluation_gate_not_passed"


class NothingToRollBack(Conflict):
    code = "nothing_to_roll_back"


@dataclass(frozen=True)
class Verdict:
    """The gate's answer for one job: passed, and the reasons it did not."""

    passed: bool
    reasons: tuple[str, ...]


def verdict(evaluation: dict[str, Any] | None) -> Verdict:
    """Read the gate from a job's evaluation; no evaluation, or an error, is a failed gate."""
    if not evaluation:
        return Verdict(False, ("the job has no evaluation",))
    reasons = [str(r) for r in evaluation.get("reasons") or []]
    if evaluation.get("error"):
        reasons.insert(0, f"the evaluation failed: {evaluation['error']}")
    passed = evaluation.get("passed") is True
    if not passed and not reasons:
        reasons.append("the tuned model did not do better than its base")
    return Verdict(passed, tuple(reasons))


class VersionService:
    def __init__(self, db: Database, audit: AuditTrail, models: ModelStore) -> None:
        self.db = db
        self.audit = audit
        self.models = models

    def promote(
        self,
        principal: Principal,
        job_ident: str,
        alias: str,
        force: bool = False,
        actor: str | None = None,
        ip: str | None = None,
    ) -> dict[str, Any]:
        """Point `alias` at a succeeded job's tuned model if its gate passed (or `force`);
        every decision, a refusal included, is audited."""
        check_name(alias, "alias")
        who = actor or principal.actor
        with self.db.read() as session:
            job = visible_job(session, principal, job_ident)
            if job.status != SUCCEEDED or not job.fine_tuned_model:
                raise Conflict(
                    f"job {job.name!r} has not succeeded ({job.status}); nothing to promote"
                )
            target, job_id, job_name = job.fine_tuned_model, job.id, job.name
            gate = verdict(job.evaluation)
            previous = self.models.aliases().get(alias)
            self._check_rights(session, principal, alias, previous)
        if previous == target:
            raise Conflict(f"alias {alias!r} already points at {target!r}")
        if not gate.passed and not force:
            self._refuse(job_id, job_name, alias, gate, who, ip)
        detail: dict[str, Any] = {"job": job_name, "model": target, "previous": previous}
        detail["forced"] = not gate.passed
        detail |= {"reasons": list(gate.reasons)} if not gate.passed else {}
        with self._moving(alias, target, previous) as session:
            change = _change(session, alias, target, previous, PROMOTE, who, detail)
            words = " (forced past the gate)" if not gate.passed else ""
            add_event(session, job_id, f"promoted to alias {alias!r}{words}")
            self.audit.record(session, who, "tuning.promote", alias, detail, ip)
            view = change_view(change)
        return view

    def rollback(
        self, principal: Principal, alias: str, actor: str | None = None, ip: str | None = None
    ) -> dict[str, Any]:
        """Point `alias` back where it was before the newest promote still in force."""
        who = actor or principal.actor
        current = self.models.aliases().get(alias)
        with self.db.read() as session:
            undone = _in_force(session, alias)
            if not undone:
                raise NothingToRollBack(f"alias {alias!r} has no promotion to roll back")
            top = undone[-1]
            self._check_rights(session, principal, alias, current)
        if current != top.target:
            raise Conflict(
                f"alias {alias!r} points at {current!r} now, not at {top.target!r} where its "
                "last promotion left it (it was changed with `inhouse models alias`); "
                "promote a version or set the alias with `inhouse models alias`"
            )
        if top.previous is None:
            raise NothingToRollBack(
                f"alias {alias!r} did not exist before {top.target!r} was promoted; "
                f"remove it with `inhouse models unalias {alias}`"
            )
        detail = {"model": top.previous, "previous": current, "undoes": top.id}
        with self._moving(alias, top.previous, current) as session:
            change = _change(session, alias, top.previous, current, ROLLBACK, who, detail)
            self.audit.record(session, who, "tuning.rollback", alias, detail, ip)
            view = change_view(change)
        return view

    def history(self, alias: str, limit: int = 100) -> dict[str, Any]:
        """The alias's moves, newest first, each with the version's scores and who moved it."""
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be 1 to 1000", param="limit")
        with self.db.read() as session:
            rows = list(
                session.scalars(
                    select(TuningAliasChange)
                    .where(TuningAliasChange.alias == alias)
                    .order_by(TuningAliasChange.id.desc())
                    .limit(limit)
                )
            )
            if not rows:
                raise NotFound(f"alias {alias!r} has no tuning history", code="alias_not_found")
            jobs = _jobs_by_model(session, {row.target for row in rows})
            versions = [change_view(row) | _scores(jobs.get(row.target)) for row in rows]
        return {
            "object": "fine_tuning.alias.history",
            "alias": alias,
            "current": self.models.aliases().get(alias),
            "data": versions,
        }

    def _refuse(
        self, job_id: int, job: str, alias: str, gate: Verdict, who: str, ip: str | None
    ) -> None:
        reasons = "; ".join(gate.reasons)
        with self.db.write() as session:
            add_event(session, job_id, f"promotion to {alias!r} refused: {reasons}", level="warn")
            detail = {"job": job, "reasons": list(gate.reasons)}
            self.audit.record(session, who, "tuning.promote.refused", alias, detail, ip)
        raise GateNotPassed(
            f"job {job!r} did not pass the evaluation gate: {reasons}. Promote it anyway with "
            '--force (HTTP: "force": true); the audit trail records that it was forced.'
        )

    def _check_rights(
        self, session: Session, principal: Principal, alias: str, current: str | None
    ) -> None:
        """A new alias, or one pointing at a tuned model of the caller's, is the caller's to
        move; any other alias only those who manage tuning or models may retarget."""
        if current is None or _manages(principal):
            return
        job = session.scalar(select(TuningJob.name).where(TuningJob.fine_tuned_model == current))
        if job is not None:
            try:
                visible_job(session, principal, job)
                return
            except NotFound:
                pass
        raise Forbidden(
            f"alias {alias!r} points at {current!r}, which is not one of your tuned versions; "
            "an admin (tuning.manage) may move it"
        )

    @contextmanager
    def _moving(self, alias: str, target: str, previous: str | None) -> Iterator[Session]:
        """A write transaction whose last step points `alias` at `target`; if the commit then
        fails, the alias is put back, so the manifest and the history never disagree."""
        moved = False
        try:
            with self.db.write() as session:
                yield session
                self.models.alias(alias, target)
                moved = True
        except BaseException:
            if moved:
                self._put_back(alias, previous)
            raise

    def _put_back(self, alias: str, previous: str | None) -> None:
        try:
            if previous is None:
                self.models.unalias(alias)
            else:
                self.models.alias(alias, previous)
        except InhouseError:
            log.exception("could not put alias %s back to %s", alias, previous)


def _change(
    session: Session,
    alias: str,
    target: str,
    previous: str | None,
    action: str,
    actor: str,
    detail: dict[str, Any],
) -> TuningAliasChange:
    change = TuningAliasChange(
        alias=alias,
        target=target,
        previous=previous,
        action=action,
        forced=bool(detail.get("forced")),
        actor=actor,
        created_at=time.time(),
        detail=detail,
    )
    session.add(change)
    return change


def _in_force(session: Session, alias: str) -> list[TuningAliasChange]:
    """The promotions of `alias` not yet rolled back, oldest first (a stack)."""
    stack: list[TuningAliasChange] = []
    query = select(TuningAliasChange).where(TuningAliasChange.alias == alias)
    for row in session.scalars(query.order_by(TuningAliasChange.id)):
        if row.action == PROMOTE:
            stack.append(row)
        elif stack:
            stack.pop()
    return stack


def _jobs_by_model(session: Session, models: set[str]) -> dict[str, TuningJob]:
    query = select(TuningJob).where(TuningJob.fine_tuned_model.in_(models))
    return {job.fine_tuned_model: job for job in session.scalars(query) if job.fine_tuned_model}


def _scores(job: TuningJob | None) -> dict[str, Any]:
    """The version's job and its evaluation's figures (None: unknown, or not a tuned model)."""
    evaluation = (job.evaluation if job else None) or {}
    base, tuned = evaluation.get("base") or {}, evaluation.get("tuned") or {}
    return {
        "job": job.public_id if job else None,
        "job_name": job.name if job else None,
        "passed": evaluation.get("passed") if job else None,
        "base_loss": base.get("loss"),
        "tuned_loss": tuned.get("loss"),
        "base_score": base.get("score"),
        "tuned_score": tuned.get("score"),
        "trained_at": int(job.finished_at) if job and job.finished_at else None,
    }


def change_view(change: TuningAliasChange) -> dict[str, Any]:
    detail = change.detail or {}
    return {
        "object": "fine_tuning.alias.change",
        "alias": change.alias,
        "action": change.action,
        "model": change.target,
        "previous": change.previous,
        "forced": change.forced,
        "reasons": detail.get("reasons", []),
        "actor": change.actor,
        "created_at": int(change.created_at),
    }


def _manages(principal: Principal) -> bool:
    return allows(principal, Permission.TUNING_MANAGE) or allows(principal, Permission.MODEL_MANAGE)
