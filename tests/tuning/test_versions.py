"""Promote, rollback and history on the store (SQLite and PostgreSQL): the evaluation gate
refuses a version that is not better unless forced, every decision is audited, rollback goes
back one step per call, and a member moves only aliases of their own versions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from inhouse.audit.trail import AuditTrail, open_trail
from inhouse.auth.policy import Principal
from inhouse.errors import Conflict, Forbidden, InvalidRequest, NotFound
from inhouse.models.store import ModelStore
from inhouse.store.db import Database
from inhouse.store.tables import TuningAliasChange, TuningJobEvent
from inhouse.tuning.jobs import FAILED, JobNotFound
from inhouse.tuning.versions import GateNotPassed, NothingToRollBack, VersionService
from tests.conftest import make_settings
from tests.tuning.versions_world import (
    FinishedJob,
    add_people,
    audit_entries,
    build_store,
    copy_store,
    failing,
    passing,
    write_job,
)


@dataclass
class World:
    service: VersionService
    db: Database
    audit: AuditTrail
    store: ModelStore
    people: dict[str, Principal]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("versions-store"))


@pytest.fixture
def world(db: Database, tmp_path: Path, template: Path) -> Iterator[World]:
    home = tmp_path / "home"
    audit = open_trail(make_settings(home), db)
    store = copy_store(template, home)
    yield World(VersionService(db, audit, store), db, audit, store, add_people(db, audit))


def _changes(db: Database) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(TuningAliasChange)) or 0


def test_a_version_that_failed_the_gate_is_refused_and_the_refusal_audited(world: World) -> None:
    write_job(world.db, FinishedJob("support-v1", "ann", "v1", failing("tuned loss 2.3 > 2.0")))
    with pytest.raises(GateNotPassed) as refused:
        world.service.promote(world.people["ann"], "support-v1", "assistant")
    message = refused.value.message
    assert "tuned loss 2.3 > 2.0" in message and "--force" in message and '"force": true' in message
    assert refused.value.status == 409
    assert "assistant" not in world.store.aliases() and _changes(world.db) == 0
    [entry] = audit_entries(world.db, "tuning.promote.refused")
    assert entry.target == "assistant" and entry.actor.startswith("user:ann")
    assert entry.detail["reasons"] == ["tuned loss 2.3 > 2.0"]
    assert audit_entries(world.db, "tuning.promote") == []
    with world.db.read() as session:
        events = list(session.scalars(select(TuningJobEvent.message)))
    assert any("refused" in e and "tuned loss 2.3 > 2.0" in e for e in events)


def test_no_evaluation_or_an_evaluation_error_fails_the_gate(world: World) -> None:
    write_job(world.db, FinishedJob("support-v1", "ann", "v1", None))
    write_job(
        world.db, FinishedJob("support-v2", "ann", "v2", {"error": "engine died", "passed": False})
    )
    with pytest.raises(GateNotPassed, match="has no evaluation"):
        world.service.promote(world.people["ann"], "support-v1", "assistant")
    with pytest.raises(GateNotPassed, match="engine died"):
        world.service.promote(world.people["ann"], "support-v2", "assistant")


def test_a_forced_promotion_proceeds_and_is_audited_as_forced(world: World) -> None:
    write_job(world.db, FinishedJob("support-v1", "ann", "v1", failing("no better")))
    change = world.service.promote(
        world.people["ann"], "support-v1", "assistant", force=True, ip="10.0.0.7"
    )
    assert (change["model"], change["previous"], change["forced"]) == ("v1", None, True)
    assert world.store.aliases() == {"assistant": "v1"}
    assert world.store.resolve("assistant").name == "v1"
    [entry] = audit_entries(world.db, "tuning.promote")
    assert entry.detail["forced"] is True and entry.detail["reasons"] == ["no better"]
    assert entry.ip == "10.0.0.7" and entry.target == "assistant"


def test_a_passing_version_is_promoted_and_rollback_goes_back_one_step_per_call(
    world: World,
) -> None:
    root = world.people["root"]
    world.store.alias("assistant", "tiny")  # set by an admin before any tuning
    write_job(world.db, FinishedJob("support-v1", "ann", "v1", passing()))
    write_job(world.db, FinishedJob("support-v2", "ann", "v2", passing(2.0, 1.2)))
    assert world.service.promote(root, "support-v1", "assistant")["previous"] == "tiny"
    assert world.service.promote(root, "support-v2", "assistant")["previous"] == "v1"
    assert world.store.aliases()["assistant"] == "v2"
    assert world.service.rollback(root, "assistant")["model"] == "v1"
    assert world.store.aliases()["assistant"] == "v1"
    assert world.service.rollback(root, "assistant")["model"] == "tiny"
    assert world.store.aliases()["assistant"] == "tiny"
    with pytest.raises(NothingToRollBack, match="no promotion to roll back"):
        world.service.rollback(root, "assistant")
    assert world.store.aliases()["assistant"] == "tiny"
    assert [e.detail["model"] for e in audit_entries(world.db, "tuning.rollback")] == ["v1", "tiny"]


def test_history_lists_the_versions_with_their_scores_and_who_moved_the_alias(
    world: World,
) -> None:
    root = world.people["root"]
    write_job(world.db, FinishedJob("support-v1", "ann", "v1", passing(2.0, 1.5)))
    write_job(world.db, FinishedJob("support-v2", "ann", "v2", failing()))
    world.service.promote(root, "support-v1", "assistant")
    world.service.promote(root, "support-v2", "assistant", force=True)
    world.service.rollback(root, "assistant")
    found = world.service.history("assistant")
    assert found["current"] == "v1"
    rows = found["data"]
    assert [(r["action"], r["model"], r["forced"]) for r in rows] == [
        ("rollback", "v1", False),
        ("promote", "v2", True),
        ("promote", "v1", False),
    ]
    first = rows[2]
    assert (first["job_name"], first["passed"]) == ("support-v1", True)
    assert (first["base_loss"], first["tuned_loss"]) == (2.0, 1.5)
    assert (first["base_score"], first["tuned_score"]) == (0.2, 0.6)
    assert rows[1]["reasons"] and rows[1]["passed"] is False
    assert all(r["actor"].startswith("user:root") for r in rows)
    with pytest.raises(NotFound):
        world.service.history("nobody-promoted-this")


def test_rollback_after_the_alias_was_moved_by_hand_changes_nothing(world: World) -> None:
    root = world.people["root"]
    write_job(world.db, FinishedJob("support-v1", "ann", "v1", passing()))
    write_job(world.db, FinishedJob("support-v2", "ann", "v2", passing()))
    world.service.promote(root, "support-v1", "assistant")
    world.service.promote(root, "support-v2", "assistant")
    world.store.alias("assistant", "v3")  # `inhouse models alias assistant v3`
    with pytest.raises(Conflict, match="points at 'v3' now"):
        world.service.rollback(root, "assistant")
    assert world.store.aliases()["assistant"] == "v3"


def test_a_new_alias_cannot_be_rolled_back_past_its_first_promotion(world: World) -> None:
    write_job(world.db, FinishedJob("support-v1", "ann", "v1", passing()))
    world.service.promote(world.people["ann"], "support-v1", "assistant")
    with pytest.raises(NothingToRollBack, match="unalias assistant"):
        world.service.rollback(world.people["ann"], "assistant")
    assert world.store.aliases() == {"assistant": "v1"}


def test_members_promote_only_their_own_jobs_onto_aliases_of_their_own(world: World) -> None:
    ann, bob, root = (world.people[n] for n in ("ann", "bob", "root"))
    write_job(world.db, FinishedJob("ann-v1", "ann", "v1", passing()))
    write_job(world.db, FinishedJob("bob-v1", "bob", "v2", passing()))
    with pytest.raises(JobNotFound):  # another user's job is not found
        world.service.promote(ann, "bob-v1", "assistant")
    world.service.promote(ann, "ann-v1", "ann-bot")
    with pytest.raises(Forbidden, match="not one of your tuned versions"):
        world.service.promote(bob, "bob-v1", "ann-bot")  # ann's alias
    with pytest.raises(Forbidden):
        world.service.rollback(bob, "ann-bot")
    world.store.alias("assistant", "tiny")  # the admin's alias for everyone
    with pytest.raises(Forbidden):
        world.service.promote(ann, "ann-v1", "assistant")
    assert world.service.promote(root, "ann-v1", "assistant")["model"] == "v1"
    assert world.store.aliases() == {"ann-bot": "v1", "assistant": "v1"}


def test_refusals_that_change_nothing(world: World) -> None:
    ann = world.people["ann"]
    write_job(world.db, FinishedJob("broken", "ann", None, None, status=FAILED))
    write_job(world.db, FinishedJob("support-v1", "ann", "v1", passing()))
    with pytest.raises(Conflict, match="has not succeeded"):
        world.service.promote(ann, "broken", "assistant")
    with pytest.raises(InvalidRequest, match="may not shadow"):
        world.service.promote(ann, "support-v1", "tiny")  # a model's name
    with pytest.raises(InvalidRequest, match="invalid alias"):
        world.service.promote(ann, "support-v1", "../etc")
    with pytest.raises(NothingToRollBack):
        world.service.rollback(ann, "assistant")
    world.service.promote(ann, "support-v1", "assistant")
    with pytest.raises(Conflict, match="already points at 'v1'"):
        world.service.promote(ann, "support-v1", "assistant")
    assert _changes(world.db) == 1 and world.store.aliases() == {"assistant": "v1"}
