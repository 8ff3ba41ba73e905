"""JobService on SQLite and PostgreSQL: what a job creation checks before anything is queued,
cancelling a queued job, who sees which job, and paging through jobs and events."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from inhouse.audit.trail import AuditTrail, open_trail
from inhouse.auth.authenticate import principal_for_key
from inhouse.auth.directory import Directory
from inhouse.auth.policy import Principal
from inhouse.errors import Conflict, InvalidRequest, ModelNotFound, NotFound
from inhouse.models.manifest import StoredAdapterSet, locked, read_manifest, write_manifest
from inhouse.models.store import DEFAULT_NAME, ModelStore
from inhouse.store.db import Database
from inhouse.store.tables import AuditEntry, TuningJob, TuningJobEvent
from inhouse.tuning.datasets import Format
from inhouse.tuning.jobs import (
    CANCELLED,
    QUEUED,
    SUCCEEDED,
    Hyperparameters,
    JobRequest,
    JobService,
    TuningUnavailable,
    add_event,
)
from inhouse.tuning.lora_export import UnsupportedBaseModel
from inhouse.tuning.service import DatasetService
from inhouse.tuning.trainer import spec as trainer_spec
from tests.conftest import make_settings, need
from tests.tuning.test_datasets import chat, jsonl

ACTOR = "cli:test"
GOOD = jsonl(*(chat(f"question {i}?", f"answer {i}.") for i in range(6)))
OTHER_ARCH = "phi-like"  # a stored model whose architecture tuning does not support
ADAPTER_SET = "smollm2-tuned"
CANCELLED_EVENT = "cancelled"  # what a queued job's log says when it is cancelled


@dataclass
class World:
    jobs: JobService
    db: Database
    store: ModelStore
    people: dict[str, Principal]  # ann, bob (members), root (admin)


def _principal(db: Database, audit: AuditTrail, name: str) -> Principal:
    with db.write() as session:
        _, secret = Directory(session, audit, ACTOR).create_key(name)
    with db.read() as session:
        return principal_for_key(session, secret, time.time())


def add_other_records(store: ModelStore) -> None:
    """An adapter set on the default model and a model of another architecture, as records
    in the manifest (tuning refuses both before it would read their files)."""
    with locked(store.root):
        manifest = read_manifest(store.root)
        default = manifest.models[DEFAULT_NAME]
        manifest.models[OTHER_ARCH] = dataclasses.replace(
            default, architecture="phi3", builtin=False
        )
        manifest.adapter_sets[ADAPTER_SET] = StoredAdapterSet(DEFAULT_NAME, ())
        write_manifest(store.root, manifest)


@pytest.fixture
def world(db: Database, tmp_path: Path) -> Iterator[World]:
    need(trainer_spec.tuning_available() is None, "the tuning extra is not installed")
    settings = make_settings(tmp_path / "home")
    audit = open_trail(settings, db)
    with db.write() as session:
        directory = Directory(session, audit, ACTOR)
        directory.add_user("ann")
        directory.add_user("bob")
        directory.add_user("root", role="admin")
    people = {name: _principal(db, audit, name) for name in ("ann", "bob", "root")}
    datasets = DatasetService(db, audit, settings.knowledge)
    datasets.add(people["ann"], "tickets", GOOD, Format.CHAT, "t.jsonl")
    store = ModelStore(settings.home)
    store.ensure_default()
    add_other_records(store)
    yield World(JobService(db, audit, store), db, store, people)


def _create(world: World, who: str = "ann", **fields: object) -> dict[str, object]:
    request = JobRequest(base=DEFAULT_NAME, dataset="tickets", **fields)  # type: ignore[arg-type]
    return world.jobs.create(world.people[who], request, ip="10.0.0.7")


def _audited(db: Database, action: str) -> list[tuple[str, str, str | None]]:
    with db.read() as session:
        rows = session.execute(
            select(AuditEntry.actor, AuditEntry.target, AuditEntry.ip).where(
                AuditEntry.action == action
            )
        )
        return [(actor, target, ip) for actor, target, ip in rows]


def test_a_job_is_queued_with_its_settings_an_event_and_an_audit_entry(world: World) -> None:
    hyper = Hyperparameters(epochs=2, rank=8, learning_rate=1e-4)
    job = _create(world, name="support-v1", hyperparameters=hyper, scorer="exact")
    assert str(job["id"]).startswith("ftjob-") and job["object"] == "fine_tuning.job"
    assert (job["status"], job["name"], job["model"], job["owner"]) == (
        QUEUED,
        "support-v1",
        DEFAULT_NAME,
        "ann",
    )
    assert job["hyperparameters"] == {
        "n_epochs": 2,
        "batch_size": 8,
        "learning_rate_multiplier": 0.5,
    }
    assert job["dataset"] == "tickets" and str(job["training_file"]).startswith("file-")
    assert job["fine_tuned_model"] is None and job["scorer"] == "exact"
    events = world.jobs.events(world.people["ann"], "support-v1")
    assert [e["message"] for e in events] == [f"queued: train {DEFAULT_NAME} on tickets"]
    assert _audited(world.db, "tuning.job.create") == [
        (world.people["ann"].actor, "support-v1", "10.0.0.7")
    ]
    unnamed = _create(world)
    assert str(unnamed["name"]).startswith(f"{DEFAULT_NAME}-")


def test_an_unreadable_or_unknown_data_set_is_not_found(world: World) -> None:
    for who, dataset in (("bob", "tickets"), ("ann", "nothing"), ("ann", "file-0000")):
        request = JobRequest(base=DEFAULT_NAME, dataset=dataset)
        with pytest.raises(NotFound, match="no data set") as refused:
            world.jobs.create(world.people[who], request)
        assert refused.value.status == 404 and "ann" not in refused.value.message
    with world.db.read() as session:
        assert session.scalars(select(TuningJob)).all() == []


def test_a_name_taken_by_a_model_an_alias_or_a_job_is_a_conflict(world: World) -> None:
    world.store.alias("assistant", DEFAULT_NAME)
    _create(world, name="support-v1")
    for taken in (DEFAULT_NAME, ADAPTER_SET, "assistant", "support-v1"):
        with pytest.raises(Conflict, match="is taken"):
            _create(world, name=taken)
    with pytest.raises(InvalidRequest, match="invalid model name") as refused:
        _create(world, name="../escape")
    assert refused.value.param == "name"


def test_a_base_that_cannot_be_tuned_is_refused_naming_what_can(world: World) -> None:
    with pytest.raises(UnsupportedBaseModel, match="supports llama-architecture") as refused:
        world.jobs.create(world.people["ann"], JobRequest(base=OTHER_ARCH, dataset="tickets"))
    assert refused.value.status == 400 and "phi3" in refused.value.message
    with pytest.raises(InvalidRequest, match="is an adapter set") as adapter:
        world.jobs.create(world.people["ann"], JobRequest(base=ADAPTER_SET, dataset="tickets"))
    assert adapter.value.param == "model"
    with pytest.raises(ModelNotFound):
        world.jobs.create(world.people["ann"], JobRequest(base="nope", dataset="tickets"))


def test_out_of_bounds_hyperparameters_are_named(world: World) -> None:
    wrong: dict[str, Any] = {"epochs": 0, "rank": 0, "learning_rate": 2.0, "eval_split": 0.9}
    for field, value in wrong.items():
        hyper = dataclasses.replace(Hyperparameters(), **{field: value})
        with pytest.raises(InvalidRequest) as refused:
            _create(world, hyperparameters=hyper)
        assert refused.value.param == field and field in refused.value.message


def test_without_the_tuning_extra_the_refusal_says_what_to_install(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trainer_spec, "TUNING_PACKAGES", ("torch", "no_such_package_here"))
    with pytest.raises(TuningUnavailable, match=r"pip install 'inhouse\[tuning\]'") as refused:
        _create(world)
    assert refused.value.code == "tuning_unavailable" and refused.value.status == 400


def test_continuing_from_a_job_that_has_not_succeeded_is_refused(world: World) -> None:
    first = _create(world, name="support-v1")
    with pytest.raises(InvalidRequest, match="has not succeeded") as refused:
        _create(world, name="support-v2", continue_from="support-v1")
    assert refused.value.param == "continue_from"
    with world.db.write() as session:
        row = session.scalars(select(TuningJob).where(TuningJob.name == "support-v1")).one()
        row.status = SUCCEEDED
    second = _create(world, name="support-v2", continue_from=str(first["id"]))
    assert second["continued_from"] == "support-v1"
    with pytest.raises(NotFound):  # another member's job cannot be continued from
        world.jobs.create(
            world.people["bob"],
            JobRequest(base=DEFAULT_NAME, dataset="tickets", continue_from="support-v1"),
        )


def test_cancelling_a_queued_job_ends_it_with_an_event_and_an_audit_entry(world: World) -> None:
    job = _create(world, name="support-v1")
    ann = world.people["ann"]
    cancelled = world.jobs.cancel(ann, str(job["id"]), ip="10.0.0.8")
    assert cancelled["status"] == CANCELLED and cancelled["finished_at"] is not None
    assert world.jobs.get(ann, "support-v1")["status"] == CANCELLED
    assert world.jobs.events(ann, "support-v1")[-1]["message"] == CANCELLED_EVENT
    assert _audited(world.db, "tuning.job.cancel") == [(ann.actor, "support-v1", "10.0.0.8")]
    with pytest.raises(Conflict, match="already cancelled"):
        world.jobs.cancel(ann, "support-v1")


def test_a_member_sees_only_their_jobs_and_an_admin_sees_every_job(world: World) -> None:
    bob, root = world.people["bob"], world.people["root"]
    job = _create(world, name="support-v1")
    for call in (world.jobs.get, world.jobs.cancel, world.jobs.events):
        with pytest.raises(NotFound, match="no fine-tuning job"):
            call(bob, "support-v1")
    with pytest.raises(NotFound):
        world.jobs.get(bob, str(job["id"]))
    assert world.jobs.jobs(bob) == []
    assert [j["name"] for j in world.jobs.jobs(root)] == ["support-v1"]
    assert world.jobs.get(root, "support-v1")["owner"] == "ann"
    assert world.jobs.cancel(root, "support-v1")["status"] == CANCELLED


def test_jobs_page_newest_first_after_a_cursor(world: World) -> None:
    names = [str(_create(world, name=f"v{i}")["name"]) for i in range(4)]
    ann = world.people["ann"]
    assert [j["name"] for j in world.jobs.jobs(ann)] == names[::-1]
    assert [j["name"] for j in world.jobs.jobs(ann, limit=2)] == ["v3", "v2"]
    assert [j["name"] for j in world.jobs.jobs(ann, limit=2, after="v2")] == ["v1", "v0"]
    assert world.jobs.jobs(ann, after="v0") == []


def test_events_page_after_a_cursor_and_newest_first_before_one(world: World) -> None:
    job = _create(world, name="support-v1")
    with world.db.write() as session:
        row_id = session.scalars(select(TuningJob.id).where(TuningJob.name == "support-v1")).one()
        for step in range(1, 5):
            add_event(session, row_id, f"step {step}", data={"step": step})
    ann = world.people["ann"]
    every = world.jobs.events(ann, "support-v1")
    assert [e["message"] for e in every][1:] == [f"step {s}" for s in range(1, 5)]
    assert every[1]["type"] == "metrics" and every[1]["data"] == {"step": 1}
    assert every[0]["fine_tuning_job_id"] == job["id"]
    seqs = [int(e["seq"]) for e in every]
    assert [e["seq"] for e in world.jobs.events(ann, "support-v1", after=seqs[2])] == seqs[3:]
    assert [e["seq"] for e in world.jobs.events(ann, "support-v1", limit=2)] == seqs[:2]
    newest = world.jobs.recent_events(ann, "support-v1", limit=2)
    assert [e["seq"] for e in newest] == seqs[::-1][:2]
    older = world.jobs.recent_events(ann, "support-v1", before=seqs[-2], limit=10)
    assert [e["seq"] for e in older] == seqs[::-1][2:]
    with pytest.raises(InvalidRequest):
        world.jobs.events(ann, "support-v1", limit=0)
    with world.db.read() as session:
        assert len(session.scalars(select(TuningJobEvent)).all()) == 5


def test_lora_alpha_is_twice_the_rank_unless_given(world: World) -> None:
    default = _create(world, name="r4", hyperparameters=Hyperparameters(rank=4))
    given = _create(world, name="r4a", hyperparameters=Hyperparameters(rank=4, alpha=3.0))
    assert default["method"]["lora"]["alpha"] == 8.0  # type: ignore[index]
    assert given["method"]["lora"]["alpha"] == 3.0  # type: ignore[index]
