"""Continual learning on the store (SQLite and PostgreSQL): a schedule queues the next
version once N new usable rated answers exist and not before, never a second while one is
queued or running, promotes a version whose gate passed and records one whose gate failed,
once; a broken schedule stops no other.

Training is not run here: a queued job is marked succeeded with an evaluation straight in the
store (`versions_world.finish`), as the runner leaves it (the runner's tests train)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from inhouse.audit.trail import AuditTrail, open_trail
from inhouse.auth.policy import Principal
from inhouse.errors import Conflict, Forbidden, InvalidRequest, NotFound
from inhouse.models.store import ModelStore
from inhouse.store.db import Database
from inhouse.store.tables import (
    Feedback,
    TuningAliasChange,
    TuningDataset,
    TuningJob,
    TuningJobEvent,
    TuningSchedule,
    User,
)
from inhouse.tuning.jobs import QUEUED, RUNNING
from inhouse.tuning.schedule import ScheduleService, run_due_schedules
from inhouse.tuning.trainer.spec import tuning_available
from tests.conftest import make_settings, need
from tests.tuning.versions_world import (
    FinishedJob,
    add_people,
    audit_entries,
    build_store,
    copy_store,
    failing,
    finish,
    passing,
    write_job,
)

_ids = count()


@dataclass
class World:
    db: Database
    audit: AuditTrail
    store: ModelStore
    schedules: ScheduleService
    people: dict[str, Principal]

    def run(self) -> list[dict[str, Any]]:
        knowledge = make_settings(Path("/nonexistent")).knowledge
        return run_due_schedules(self.db, self.audit, self.store, knowledge)

    def rate(self, n: int, rating: int = 1, kept: bool = True) -> None:
        """`n` answers rated by ann (their prompt kept unless `kept` is False)."""
        now = time.time()
        with self.db.write() as session:
            ann = session.scalar(select(User.id).where(User.name == "ann"))
            for _ in range(n):
                i = next(_ids)
                session.add(
                    Feedback(
                        completion_id=f"chatcmpl-{i}",
                        user_id=ann,
                        model="assistant",
                        rating=rating,
                        prompt=[{"role": "user", "content": f"question {i}?"}] if kept else None,
                        answer=f"answer {i}." if kept else None,
                        created_at=now,
                        updated_at=now,
                    )
                )

    def jobs(self) -> list[TuningJob]:
        with self.db.read() as session:
            return list(session.scalars(select(TuningJob).order_by(TuningJob.id)))

    def schedule(self, name: str = "support") -> TuningSchedule:
        with self.db.read() as session:
            row = session.scalar(select(TuningSchedule).where(TuningSchedule.name == name))
            assert row is not None
            return row


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("schedule-store"))


@pytest.fixture
def world(db: Database, tmp_path: Path, template: Path) -> Iterator[World]:
    need(tuning_available() is None, f"{tuning_available()}")
    settings = make_settings(tmp_path / "home")
    audit = open_trail(settings, db)
    store = copy_store(template, settings.home)
    people = add_people(db, audit)
    write_job(db, FinishedJob("support-v1", "ann", "v1", passing()))
    service = ScheduleService(db, audit, store, settings.knowledge)
    yield World(db, audit, store, service, people)


def _add(world: World, name: str = "support", threshold: int = 5, base: str = "support-v1") -> None:
    world.schedules.create(world.people["root"], name, base, "assistant", threshold)


def test_a_job_is_queued_after_n_new_rated_answers_and_not_before(world: World) -> None:
    world.rate(3)  # before the schedule: not new
    _add(world)
    world.rate(4)
    world.rate(3, kept=False)  # no prompt kept: nothing to learn from
    world.rate(2, rating=-1)  # disliked, not corrected
    assert world.run() == [{"schedule": "support"}]
    assert [j.name for j in world.jobs()] == ["support-v1"]
    world.rate(1)
    [outcome] = world.run()
    assert outcome["started"] == {
        "job": "support-1",
        "dataset": "support-1-feedback",
        "continues": "support-v1",
    }
    job = world.jobs()[-1]
    assert (job.name, job.status, job.base_model) == ("support-1", QUEUED, "tiny")
    assert job.hyperparameters["epochs"] == 1 and job.hyperparameters["batch_size"] == 2
    with world.db.read() as session:
        assert session.get(TuningJob, job.parent_job_id).name == "support-v1"  # type: ignore[union-attr]
        dataset = session.scalar(
            select(TuningDataset).where(TuningDataset.name == job.dataset_name)
        )
        assert dataset is not None and dataset.train_count + dataset.eval_count == 5
        ann = session.scalar(select(User.id).where(User.name == "ann"))
        assert job.owner_user_id == ann and dataset.owner_user_id == ann  # the line's owner
    schedule = world.schedule()
    assert (schedule.runs, schedule.last_job) == (1, "support-1")
    [entry] = audit_entries(world.db, "tuning.schedule.run")
    assert entry.actor == "schedule:support" and entry.detail["job"] == "support-1"


def test_no_second_job_while_one_of_the_line_is_queued_or_running(world: World) -> None:
    _add(world)
    world.rate(5)
    world.run()
    world.run()  # called twice: still one job
    assert len(world.jobs()) == 2
    world.rate(12)
    with world.db.write() as session:
        job = session.scalar(select(TuningJob).where(TuningJob.name == "support-1"))
        assert job is not None
        job.status = RUNNING
    assert world.run() == [{"schedule": "support"}]
    assert len(world.jobs()) == 2 and world.schedule().runs == 1


def test_a_version_that_passes_is_promoted_and_one_that_fails_is_recorded_once(
    world: World,
) -> None:
    _add(world)
    world.rate(5)
    world.run()
    finish(world.db, "support-1", "v2", passing(2.0, 1.1))
    [outcome] = world.run()
    assert outcome["decision"] == {
        "job": "support-1",
        "alias": "assistant",
        "promoted": True,
        "reasons": [],
    }
    assert world.store.aliases() == {"assistant": "v2"}
    world.run()  # idempotent: no second promotion
    with world.db.read() as session:
        changes = list(session.scalars(select(TuningAliasChange)))
    assert [(c.target, c.actor) for c in changes] == [("v2", "schedule:support")]
    # the next version continues from the newest succeeded one and fails its gate
    world.rate(5)
    [outcome] = world.run()
    assert outcome["started"]["continues"] == "support-1"
    finish(world.db, "support-2", "v3", failing("exact match fell from 0.6 to 0.4"))
    [outcome] = world.run()
    assert outcome["decision"]["promoted"] is False
    world.run()
    assert world.store.aliases() == {"assistant": "v2"}
    [entry] = audit_entries(world.db, "tuning.schedule.not_promoted")
    assert entry.detail["job"] == "support-2"
    assert entry.detail["reasons"] == ["exact match fell from 0.6 to 0.4"]
    with world.db.read() as session:
        job = session.scalar(select(TuningJob).where(TuningJob.name == "support-2"))
        assert job is not None
        messages = list(
            session.scalars(select(TuningJobEvent.message).where(TuningJobEvent.job_id == job.id))
        )
    assert sum("not promoted to 'assistant'" in m for m in messages) == 1


def test_a_broken_schedule_stops_no_other(world: World) -> None:
    write_job(world.db, FinishedJob("legal-v1", "bob", "v3", passing()))
    with world.db.write() as session:  # a line whose settings the trainer would refuse
        job = session.scalar(select(TuningJob).where(TuningJob.name == "legal-v1"))
        assert job is not None
        job.hyperparameters = job.hyperparameters | {"epochs": 0}
    _add(world, "legal", base="legal-v1")
    _add(world, "support")
    world.rate(5)
    outcomes = {o["schedule"]: o for o in world.run()}
    assert "epochs" in outcomes["legal"]["started"]["error"]
    assert outcomes["support"]["started"]["job"] == "support-1"
    [failed] = audit_entries(world.db, "tuning.schedule.failed")
    assert failed.target == "legal"
    with world.db.read() as session:  # the failed run's data set was removed
        names = list(session.scalars(select(TuningDataset.name)))
    assert names == ["support-1-feedback"]


def test_creating_and_removing_schedules(world: World) -> None:
    ann, root = world.people["ann"], world.people["root"]
    with pytest.raises(Forbidden):
        world.schedules.create(ann, "mine", "support-v1", "assistant", 5)
    with pytest.raises(NotFound):
        world.schedules.create(root, "x", "no-such-job", None, 5)
    with pytest.raises(InvalidRequest, match="min_new_feedback"):
        world.schedules.create(root, "x", "support-v1", None, 0)
    with pytest.raises(InvalidRequest, match="may not shadow"):
        world.schedules.create(root, "x", "support-v1", "tiny", 5)
    _add(world)
    with pytest.raises(Conflict):
        _add(world)
    world.rate(2)
    [row] = world.schedules.schedules()
    assert (row["name"], row["new_feedback"], row["alias"]) == ("support", 2, "assistant")
    world.schedules.remove(root, "support")
    assert world.schedules.schedules() == []
    with world.db.read() as session:
        assert session.scalar(select(func.count()).select_from(TuningSchedule)) == 0
    assert [e.target for e in audit_entries(world.db, "tuning.schedule.delete")] == ["support"]
