"""Running fine-tuning jobs: claim one, train it in a child process, export and register the
adapter, evaluate it, settle its costs.

A runner claims a queued job (or a running one whose runner stopped beating: it died) in one
transaction, at most `tuning.concurrent_jobs` at a time. The trainer is a child process
(`python -m inhouse.tuning.trainer JOB_DIR`) at low priority, with its own memory limit, that
dies with the runner; it appends its progress to a file that the runner copies into the job
row and its events. A trainer that dies without saying why (kill -9, a crash) is started
again and resumes from its last checkpoint, up to `tuning.max_attempts` starts. The adapter is
exported to GGUF beside the job and registered in the model store only when complete, so a
failed export (a full disk) registers nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from inhouse.audit.trail import AuditTrail
from inhouse.config import TuningSettings
from inhouse.errors import InhouseError
from inhouse.models.store import ModelStore
from inhouse.store.db import Database
from inhouse.store.tables import TuningJob, UsageRecord
from inhouse.tuning.gate import Evaluator
from inhouse.tuning.jobs import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    STALE_AFTER_S,
    SUCCEEDED,
    add_event,
)
from inhouse.tuning.lora_export import export_lora, register_adapter
from inhouse.tuning.peft_files import read_peft_adapter
from inhouse.tuning.trainer_process import TRAINER, read_new_lines, spawn, stop
from inhouse.tuning.workspace import (
    FINAL,
    GGUF,
    LOG,
    PROGRESS,
    job_dir,
    plan,
    read_spec,
    write_workspace,
)

log = logging.getLogger(__name__)

BEAT_EVERY_S = 2.0
POLL_S = 0.25
INTERRUPTED = "interrupted"  # run()'s answer when this runner stopped: the job resumes later
RUNNER_ACTOR = "tuning-runner"

Progress = Callable[[dict[str, Any]], None]


@dataclass
class _Attempt:
    """What one trainer process reported."""

    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    last_step: int = 0
    how: str = ""  # how the process ended, when it did not say why itself


class JobRunner:
    def __init__(
        self,
        db: Database,
        audit: AuditTrail,
        models: ModelStore,
        home: Path,
        settings: TuningSettings,
        evaluator: Evaluator | None = None,
        trainer: Sequence[str] = TRAINER,
    ) -> None:
        self.db = db
        self.audit = audit
        self.models = models
        self.home = home
        self.settings = settings
        self.evaluator = evaluator
        self.trainer = tuple(trainer)
        self.stopping = threading.Event()  # set: stop the trainer, leave the job to resume
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # ----- claiming ----------------------------------------------------------------------

    def claim(self, public_id: str | None = None) -> int | None:
        """Take the oldest waiting job (or `public_id`) if fewer than `concurrent_jobs` run;
        a job whose runner died counts as waiting. Returns its row id, or None."""
        now = time.time()
        stale = now - STALE_AFTER_S
        with self.db.write() as session:
            alive = session.scalar(
                select(func.count())
                .select_from(TuningJob)
                .where(TuningJob.status == RUNNING, TuningJob.heartbeat_at >= stale)
            )
            if (alive or 0) >= self.settings.concurrent_jobs:
                return None
            waiting = or_(
                TuningJob.status == QUEUED,
                (TuningJob.status == RUNNING)
                & (TuningJob.heartbeat_at < stale)
                & ~TuningJob.cancel_requested,
            )
            query = select(TuningJob).where(waiting).order_by(TuningJob.id).limit(1)
            if public_id is not None:
                query = query.where(TuningJob.public_id == public_id)
            job = session.scalar(query)
            if job is None:
                return None
            taken = session.execute(
                update(TuningJob)
                .where(TuningJob.id == job.id, TuningJob.status == job.status)
                .where(or_(TuningJob.heartbeat_at.is_(None), TuningJob.heartbeat_at < stale))
                .values(status=RUNNING, runner=self.name, heartbeat_at=now)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                return None
            if job.started_at is None:
                job.started_at = now
            else:
                add_event(session, job.id, "its runner stopped; resuming from the last checkpoint")
            return job.id

    def run_pending(self) -> bool:
        """Claim and run one job; False when none could be claimed."""
        job_id = self.claim()
        if job_id is None:
            return False
        self.run(job_id)
        return True

    # ----- running -----------------------------------------------------------------------

    def run(self, job_id: int, on_progress: Progress | None = None) -> str:
        """Train a claimed job to its end; returns its final status."""
        try:
            folder = self._prepare(job_id)
            status = self._train(job_id, folder, on_progress)
            if status == INTERRUPTED:
                self._release(job_id)
                return status
            if status == SUCCEEDED:
                status = self._finish(job_id, folder)
        except KeyboardInterrupt:  # the CLI's Ctrl-C: the trainer is stopped already
            self._cancelled(job_id)
            raise
        except InhouseError as exc:
            status = self._fail(job_id, exc.code or "error", str(exc))
        except OSError as exc:  # a full disk, a folder that vanished: nothing is registered
            status = self._fail(job_id, "storage_error", str(exc))
        except Exception as exc:  # the job fails; the runner and the server go on
            log.exception("tuning job %s failed", job_id)
            status = self._fail(job_id, "internal_error", f"{type(exc).__name__}: {exc}")
        self._settle(job_id)
        return status

    def _prepare(self, job_id: int) -> Path:
        """The job's folder with its examples and spec (made on the first start only)."""
        with self.db.read() as session:
            job = _job(session, job_id)
            folder = job_dir(self.home, job.public_id)
            if read_spec(folder) is not None:
                return folder
            split, spec = plan(session, job, self.models, self.settings, self.home)
        write_workspace(folder, split, spec)
        return folder

    def _train(self, job_id: int, folder: Path, on_progress: Progress | None) -> str:
        """Start the trainer until it finishes, fails, is cancelled or has died too often.
        A trainer that had finished before its runner died is not started again."""
        finished = _finished_training(folder)
        if finished is not None:
            self._record_done(job_id, finished)
            return SUCCEEDED
        while True:
            with self.db.write() as session:
                job = _job(session, job_id)
                job.attempts += 1
                attempt_no = job.attempts
            attempt = self._attempt(job_id, folder, on_progress)
            if attempt is None:
                return INTERRUPTED if self.stopping.is_set() else self._cancelled(job_id)
            if attempt.done is not None:
                self._record_done(job_id, attempt.done)
                return SUCCEEDED
            if attempt.error is not None:
                return self._fail(job_id, attempt.error["code"], attempt.error["message"])
            if attempt_no >= self.settings.max_attempts:
                return self._fail(
                    job_id,
                    "trainer_died",
                    f"the trainer died {attempt_no} times (last: {attempt.how}); giving up. "
                    "A trainer killed by the system or aborting may have run out of memory "
                    f"(tuning.max_memory_mb = {self.settings.max_memory_mb})",
                )
            with self.db.write() as session:
                add_event(
                    session,
                    job_id,
                    f"the trainer stopped at step {attempt.last_step} without finishing "
                    f"({attempt.how}); starting it again from its last checkpoint",
                    level="warn",
                )

    def _attempt(self, job_id: int, folder: Path, on_progress: Progress | None) -> _Attempt | None:
        """One trainer process, followed to its exit; None if the job was cancelled or this
        runner is stopping (the trainer is stopped then, however this returns)."""
        progress = folder / PROGRESS
        offset = progress.stat().st_size if progress.exists() else 0
        attempt = _Attempt()
        with open(folder / LOG, "ab") as trainer_log:
            child = spawn(self.trainer, folder, trainer_log)
            try:
                beat, heard = 0.0, time.monotonic()
                while True:
                    exited = child.poll() is not None
                    before = offset
                    offset = self._read_progress(job_id, progress, offset, attempt, on_progress)
                    if offset != before:
                        heard = time.monotonic()
                    if exited:
                        attempt.how = _exit_words(child.returncode)
                        return attempt
                    if time.monotonic() - heard > self.settings.stall_timeout_s:
                        attempt.how = f"said nothing for {self.settings.stall_timeout_s:g} s"
                        return attempt  # the finally stops it: it counts as a death
                    if time.monotonic() - beat >= BEAT_EVERY_S:
                        beat = time.monotonic()
                        if self._beat(job_id):
                            return None
                    if self.stopping.wait(POLL_S):
                        return None
            finally:
                if child.poll() is None:
                    stop(child)

    def _read_progress(
        self,
        job_id: int,
        path: Path,
        offset: int,
        attempt: _Attempt,
        on_progress: Progress | None,
    ) -> int:
        """Copy the trainer's new complete lines into the job row and its events."""
        lines, offset = read_new_lines(path, offset)
        if lines:
            with self.db.write() as session:
                job = _job(session, job_id)
                for line in lines:
                    self._apply(session, job, line, attempt)
            for line in lines:
                if on_progress is not None:
                    on_progress(line)
        return offset

    def _apply(
        self, session: Session, job: TuningJob, line: dict[str, Any], attempt: _Attempt
    ) -> None:
        kind = line.get("type")
        if kind == "progress":
            attempt.last_step = int(line["step"])
            job.progress = line
            job.trained_tokens = int(line.get("tokens", job.trained_tokens))
            if _reported(line):
                message = f"step {line['step']}/{line['total_steps']}: loss {line['loss']:.4f}"
                add_event(session, job.id, message, data=line)
        elif kind == "start":
            resumed = line.get("resumed_from")
            words = f"resumed at step {resumed}" if resumed else "started"
            add_event(session, job.id, f"training {words}: {line.get('total_steps')} steps")
        elif kind == "checkpoint":
            add_event(session, job.id, f"checkpoint at step {line['step']}")
        elif kind == "done":
            attempt.done = line
        elif kind == "error":
            attempt.error = {
                "code": str(line.get("code", "trainer_error")),
                "message": str(line.get("message", "")),
            }

    def _beat(self, job_id: int) -> bool:
        """Refresh the heartbeat; True when the job's cancellation was asked for."""
        with self.db.write() as session:
            job = _job(session, job_id)
            job.heartbeat_at = time.time()
            if job.started_at is not None:
                job.train_seconds = time.time() - job.started_at
            return job.cancel_requested

    def _record_done(self, job_id: int, done: dict[str, Any]) -> None:
        with self.db.write() as session:
            job = _job(session, job_id)
            job.trained_tokens = int(done.get("trained_tokens") or job.trained_tokens)
            loss = done.get("eval_loss")
            job.torch_eval_loss = float(loss) if isinstance(loss, (int, float)) else None
            job.progress = (job.progress or {}) | {"phase": "exporting"}
            message = f"trained: {job.trained_tokens} tokens, train loss {done.get('train_loss')}"
            add_event(session, job_id, message, data=done)

    # ----- finishing ---------------------------------------------------------------------

    def _finish(self, job_id: int, folder: Path) -> str:
        """Export the adapter to GGUF, register it, evaluate it; the job has succeeded once
        the tuned model is served (a failed evaluation is recorded, not a failed job)."""
        with self.db.read() as session:
            job = _job(session, job_id)
            name, base = job.name, job.base_model
        tensors, config = read_peft_adapter(folder / FINAL)
        gguf_path = export_lora(tensors, config, self.models.resolve(base).path, folder / GGUF)
        if name not in self.models.names():  # else: registered before this runner's restart
            register_adapter(self.models, name, base, gguf_path)
        with self.db.write() as session:
            job = _job(session, job_id)
            job.fine_tuned_model = name
            job.progress = (job.progress or {}) | {"phase": "evaluating"}
            add_event(session, job_id, f"registered the tuned model {name!r}")
            self.audit.record(session, RUNNER_ACTOR, "tuning.job.model", name, {"base": base})
        evaluation = self._evaluate(job_id, folder)
        with self.db.write() as session:
            job = _job(session, job_id)
            job.evaluation = evaluation
            job.status, job.finished_at = SUCCEEDED, time.time()
            job.progress = (job.progress or {}) | {"phase": "done"}
            add_event(session, job_id, _evaluation_message(evaluation), data=evaluation)
            self.audit.record(session, RUNNER_ACTOR, "tuning.job.succeeded", name, None)
        return SUCCEEDED

    def evaluate(self, job_id: int) -> dict[str, Any]:
        """Evaluate a succeeded job again (`tune eval`), storing and returning the result."""
        with self.db.read() as session:
            job = _job(session, job_id)
            folder = job_dir(self.home, job.public_id)
        evaluation = self._evaluate(job_id, folder)
        with self.db.write() as session:
            _job(session, job_id).evaluation = evaluation
            add_event(session, job_id, _evaluation_message(evaluation), data=evaluation)
        return evaluation

    def _evaluate(self, job_id: int, folder: Path) -> dict[str, Any]:
        if self.evaluator is None:
            return {"error": "no evaluator is configured", "passed": False}
        with self.db.read() as session:
            job = _job(session, job_id)
            session.expunge(job)
        try:
            return self.evaluator(job, folder)
        except Exception as exc:  # recorded on the job; promote then refuses without --force
            log.exception("evaluating tuning job %s failed", job_id)
            return {"error": f"{type(exc).__name__}: {exc}", "passed": False}

    def _release(self, job_id: int) -> None:
        """Leave a running job for the next runner, which resumes it at once."""
        with self.db.write() as session:
            job = _job(session, job_id)
            job.heartbeat_at = 0.0
            add_event(session, job_id, "the server stopped; the job resumes when it starts")

    def _cancelled(self, job_id: int) -> str:
        with self.db.write() as session:
            job = _job(session, job_id)
            job.status, job.finished_at = CANCELLED, time.time()
            add_event(session, job_id, "cancelled; the trainer was stopped")
            self.audit.record(session, RUNNER_ACTOR, "tuning.job.cancelled", job.name, None)
        return CANCELLED

    def _fail(self, job_id: int, code: str, message: str) -> str:
        with self.db.write() as session:
            job = _job(session, job_id)
            job.status, job.finished_at = FAILED, time.time()
            job.error = {"code": code, "message": message[:2000], "param": None}
            add_event(session, job_id, f"failed: {message[:2000]}", level="error")
            self.audit.record(session, RUNNER_ACTOR, "tuning.job.failed", job.name, {"code": code})
        return FAILED

    def _settle(self, job_id: int) -> None:
        """The job's training tokens and machine time go into the usage ledger."""
        with self.db.write() as session:
            job = _job(session, job_id)
            if job.started_at is not None:
                job.train_seconds = (job.finished_at or time.time()) - job.started_at
            session.add(
                UsageRecord(
                    ts=time.time(),
                    request_id=job.public_id,
                    user_id=job.owner_user_id,
                    key_id=None,
                    group_id=None,
                    model=job.name,
                    endpoint="fine_tuning",
                    prompt_tokens=job.trained_tokens,
                    completion_tokens=0,
                    latency_ms=job.train_seconds * 1000.0,
                    status="ok" if job.status == SUCCEEDED else job.status,
                )
            )


def _exit_words(code: int | None) -> str:
    """How a process ended, as the log says it (`killed by SIGKILL`, `exit status 1`)."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _finished_training(folder: Path) -> dict[str, Any] | None:
    """The trainer's `done` report, if it finished and wrote its adapter earlier."""
    lines, _ = read_new_lines(folder / PROGRESS, 0)
    done = [line for line in lines if line.get("type") == "done"]
    return done[-1] if done and (folder / FINAL).is_dir() else None


def _job(session: Session, job_id: int) -> TuningJob:
    job = session.get(TuningJob, job_id)
    assert job is not None, f"tuning job {job_id} vanished"
    return job


def _reported(line: dict[str, Any]) -> bool:
    """A metrics event for every step of a short job, about 100 of a long one, and the last."""
    step, total = int(line["step"]), max(1, int(line["total_steps"]))
    return step == total or step % max(1, total // 100) == 0


def _evaluation_message(evaluation: dict[str, Any]) -> str:
    if "error" in evaluation:
        return f"evaluation failed: {evaluation['error']}"
    verdict = "passes" if evaluation.get("passed") else "does not pass"
    return f"evaluated: the tuned model {verdict} the gate"
