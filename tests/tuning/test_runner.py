"""The job runner with a torch-free trainer that speaks the real one's protocol
(tests/tuning/fake_trainer.py): a job goes queued -> running -> succeeded with its adapter
exported, registered and evaluated, or fails or is cancelled with nothing registered; a
trainer killed mid-run is started again and resumes from its checkpoint."""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import pytest
from sqlalchemy import select

from inhouse.audit.trail import AuditTrail, open_trail
from inhouse.auth.authenticate import local_operator
from inhouse.config import TuningSettings
from inhouse.errors import ModelNotFound
from inhouse.models.store import ModelStore
from inhouse.store.db import Database
from inhouse.store.tables import AuditEntry, TuningJob, UsageRecord
from inhouse.tuning.datasets import Format
from inhouse.tuning.jobs import Hyperparameters, JobRequest, JobService
from inhouse.tuning.runner import JobRunner
from inhouse.tuning.service import DatasetService
from inhouse.tuning.workspace import GGUF, job_dir
from tests.conftest import make_settings
from tests.tuning.test_datasets import chat, jsonl

FAKE = (sys.executable, str(Path(__file__).with_name("fake_trainer.py")))
OPERATOR = local_operator()


@dataclass
class Bench:
    db: Database
    audit: AuditTrail
    models: ModelStore
    home: Path
    jobs: JobService
    evaluations: list[str]

    def runner(self, **settings: Any) -> JobRunner:
        options = {"checkpoint_every": 2, "max_attempts": 3} | settings
        return JobRunner(
            self.db,
            self.audit,
            self.models,
            self.home,
            TuningSettings(**options),
            evaluator=self.evaluate,
            trainer=FAKE,
        )

    def evaluate(self, job: TuningJob, folder: Path) -> dict[str, Any]:
        self.evaluations.append(job.name)
        return {"passed": True, "base": {"loss": 2.0}, "tuned": {"loss": 1.0}}

    def start(self, name: str, epochs: int = 1, **files: str) -> str:
        request = JobRequest(
            base="smollm2", dataset="qa", name=name, hyperparameters=Hyperparameters(epochs=epochs)
        )
        job = self.jobs.create(OPERATOR, request)
        folder = job_dir(self.home, job["id"])
        folder.mkdir(parents=True)
        for file, text in files.items():
            (folder / file).write_text(text)
        return str(job["id"])

    def job(self, public_id: str) -> TuningJob:
        with self.db.read() as session:
            job = session.scalar(select(TuningJob).where(TuningJob.public_id == public_id))
            assert job is not None
            session.expunge(job)
            return job


@pytest.fixture
def bench(db: Database, tmp_path: Path) -> Iterator[Bench]:
    home = tmp_path / "home"
    settings = make_settings(home)
    audit = open_trail(settings, db)
    models = ModelStore(home)
    models.ensure_default()
    data = jsonl(*(chat(f"Question {i}?", f"Answer {i}.") for i in range(8)))
    DatasetService(db, audit, settings.knowledge).add(OPERATOR, "qa", data, Format.CHAT, "qa.jsonl")
    yield Bench(db, audit, models, home, JobService(db, audit, models), [])


def _actions(db: Database) -> list[str]:
    with db.read() as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


def test_a_job_trains_then_its_adapter_is_served_evaluated_and_billed(bench: Bench) -> None:
    public_id = bench.start("support-v1")
    runner = bench.runner()
    seen: list[dict[str, Any]] = []
    job_id = runner.claim()
    assert job_id is not None
    assert runner.run(job_id, on_progress=seen.append) == "succeeded"
    job = bench.job(public_id)
    assert job.status == "succeeded" and job.fine_tuned_model == "support-v1"
    assert job.trained_tokens == 600 and job.torch_eval_loss == 1.25
    assert job.evaluation == {"passed": True, "base": {"loss": 2.0}, "tuned": {"loss": 1.0}}
    record = bench.models.resolve("support-v1")
    assert record.kind == "adapter-set" and record.base == "smollm2"
    assert [line["step"] for line in seen if line["type"] == "progress"] == [1, 2, 3, 4, 5, 6]
    events = bench.jobs.events(OPERATOR, public_id, limit=100)
    assert any("step 6/6" in e["message"] for e in events)
    assert events[-1]["data"]["passed"] is True
    with bench.db.read() as session:
        usage = session.scalars(
            select(UsageRecord).where(UsageRecord.endpoint == "fine_tuning")
        ).all()
    assert [(u.model, u.prompt_tokens, u.status) for u in usage] == [("support-v1", 600, "ok")]
    assert "tuning.job.succeeded" in _actions(bench.db)
    assert bench.evaluations == ["support-v1"]


def test_a_trainer_killed_mid_run_is_started_again_and_resumes_from_its_checkpoint(
    bench: Bench,
) -> None:
    public_id = bench.start("resumed", epochs=2, fake_die_at="7")
    runner = bench.runner()
    job_id = runner.claim()
    assert job_id is not None and runner.run(job_id) == "succeeded"
    job = bench.job(public_id)
    assert job.attempts == 2
    messages = [e["message"] for e in bench.jobs.events(OPERATOR, public_id, limit=200)]
    assert any("without finishing" in m for m in messages)
    assert "training resumed at step 6: 12 steps" in messages
    progress = (job_dir(bench.home, public_id) / "progress.jsonl").read_text()
    assert progress.count('"step": 7,') == 1  # step 7 was never reported by the killed run
    assert bench.models.resolve("resumed").kind == "adapter-set"


def test_a_trainer_that_keeps_dying_fails_the_job_and_registers_nothing(bench: Bench) -> None:
    public_id = bench.start("doomed", fake_die_at="1", fake_die_always="")
    runner = bench.runner(max_attempts=2)
    job_id = runner.claim()
    assert job_id is not None and runner.run(job_id) == "failed"
    job = bench.job(public_id)
    assert job.error is not None and job.error["code"] == "trainer_died" and job.attempts == 2
    with pytest.raises(ModelNotFound):
        bench.models.resolve("doomed")


def test_a_trainer_error_fails_the_job_with_its_code(bench: Bench) -> None:
    public_id = bench.start("bad", fake_fail="")
    runner = bench.runner()
    job_id = runner.claim()
    assert job_id is not None and runner.run(job_id) == "failed"
    job = bench.job(public_id)
    assert job.error == {"code": "invalid_training_file", "message": "line 3: bad", "param": None}
    assert job.attempts == 1  # a reported error is not retried
    assert "tuning.job.failed" in _actions(bench.db)


def test_cancelling_a_running_job_stops_its_trainer(bench: Bench) -> None:
    public_id = bench.start("stopped", epochs=50, fake_step_s="0.2")
    runner = bench.runner()
    job_id = runner.claim()
    assert job_id is not None
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(runner.run(job_id)))
    worker.start()
    pid_file = job_dir(bench.home, public_id) / "fake_pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    bench.jobs.cancel(OPERATOR, public_id)
    worker.join(60)
    assert result == ["cancelled"]
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
    with pytest.raises(ModelNotFound):
        bench.models.resolve("stopped")


def test_a_full_disk_while_writing_the_adapter_fails_cleanly(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: gguf.GGUFWriter, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", full)
    public_id = bench.start("no-room")
    runner = bench.runner()
    job_id = runner.claim()
    assert job_id is not None and runner.run(job_id) == "failed"
    job = bench.job(public_id)
    assert job.error is not None and "No space left" in job.error["message"]
    folder = job_dir(bench.home, public_id)
    assert not (folder / GGUF).exists() and not list(folder.glob("*.tmp*"))
    with pytest.raises(ModelNotFound):
        bench.models.resolve("no-room")
    assert bench.evaluations == []


def test_one_job_trains_at_a_time_and_a_dead_runners_job_is_claimed_again(bench: Bench) -> None:
    first, second = bench.start("first"), bench.start("second")
    runner = bench.runner()
    claimed = runner.claim()
    assert claimed is not None and bench.job(first).status == "running"
    assert runner.claim() is None  # the first still beats: the second waits
    assert bench.job(second).status == "queued"
    with bench.db.write() as session:
        job = session.get(TuningJob, claimed)
        assert job is not None
        job.heartbeat_at = time.time() - 3600  # its runner died an hour ago
    again = bench.runner()
    assert again.claim() == claimed  # the dead runner's job first, before the queued one
    assert again.run(claimed) == "succeeded"
    assert again.claim() is not None and bench.job(second).status == "running"


def test_a_job_whose_runner_died_after_training_is_finished_without_training_again(
    bench: Bench,
) -> None:
    public_id = bench.start("finished")
    runner = bench.runner()
    job_id = runner.claim()
    assert job_id is not None and runner.run(job_id) == "succeeded"
    with bench.db.write() as session:  # as if the server died while evaluating
        job = session.get(TuningJob, job_id)
        assert job is not None
        job.status, job.finished_at, job.heartbeat_at = "running", None, time.time() - 3600
    again = bench.runner()
    assert again.claim() == job_id and again.run(job_id) == "succeeded"
    assert (job_dir(bench.home, public_id) / "fake_attempts").read_text() == "1"
    assert bench.job(public_id).fine_tuned_model == "finished"
    assert bench.evaluations == ["finished", "finished"]


def test_a_trainer_that_hangs_is_stopped_and_the_job_fails_saying_so(bench: Bench) -> None:
    public_id = bench.start("hung", fake_step_s="30")
    runner = bench.runner(max_attempts=1, stall_timeout_s=2)
    job_id = runner.claim()
    assert job_id is not None and runner.run(job_id) == "failed"
    job = bench.job(public_id)
    assert job.error is not None and job.error["code"] == "trainer_died"
    assert "said nothing for 2 s" in job.error["message"]
    with pytest.raises(ProcessLookupError):
        os.kill(int((job_dir(bench.home, public_id) / "fake_pid").read_text()), 0)
