"""Data sets in the store (SQLite and PostgreSQL): stored whole or not at all, from feedback
and from knowledge, and read only by their owner and the groups they are shared with."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from inhouse.audit.trail import AuditTrail, open_trail
from inhouse.auth.authenticate import local_operator, principal_for_key
from inhouse.auth.directory import Directory
from inhouse.auth.policy import Principal
from inhouse.errors import NotFound
from inhouse.store.db import Database
from inhouse.store.tables import (
    AuditEntry,
    Feedback,
    Group,
    GroupCollection,
    KnowledgeChunk,
    KnowledgeCollection,
    KnowledgeDocument,
    TuningDataset,
    TuningExample,
    User,
)
from inhouse.tuning.datasets import Format, InvalidTrainingFile
from inhouse.tuning.service import DatasetService, Options
from tests.conftest import make_settings
from tests.tuning.test_datasets import chat, jsonl

ACTOR = "cli:test"


@dataclass
class World:
    service: DatasetService
    db: Database
    audit: AuditTrail
    people: dict[str, Principal]  # ann, bob (members), root (admin), all in no shared group


def _principal(db: Database, audit: AuditTrail, name: str) -> Principal:
    """The principal of a fresh API key of `name`, as the server authenticates it."""
    with db.write() as session:
        _, secret = Directory(session, audit, ACTOR).create_key(name)
    with db.read() as session:
        return principal_for_key(session, secret, time.time())


@pytest.fixture
def world(db: Database, tmp_path: Path) -> Iterator[World]:
    settings = make_settings(tmp_path / "home")
    audit = open_trail(settings, db)
    with db.write() as session:
        directory = Directory(session, audit, ACTOR)
        directory.add_group("support")
        directory.add_group("legal")
        directory.add_user("ann", groups=["support"])
        directory.add_user("bob", groups=["legal"])
        directory.add_user("root", role="admin")
    people = {name: _principal(db, audit, name) for name in ("ann", "bob", "root")}
    yield World(DatasetService(db, audit, settings.knowledge), db, audit, people)


def _counts(db: Database) -> tuple[int, int]:
    with db.read() as session:
        datasets = session.scalar(select(func.count()).select_from(TuningDataset)) or 0
        examples = session.scalar(select(func.count()).select_from(TuningExample)) or 0
        return datasets, examples


GOOD = jsonl(
    *(chat(f"question {i}?", f"answer {i}.") for i in range(10)), chat("q", "a"), chat("q", "a")
)


def test_a_data_set_is_stored_split_and_audited(world: World) -> None:
    ann = world.people["ann"]
    shown = world.service.add(ann, "support", GOOD, Format.CHAT, "t.jsonl", Options(0.2))
    assert (shown["examples"], shown["train"], shown["eval"], shown["duplicates"]) == (11, 8, 3, 1)
    assert shown["owner"] == "ann" and shown["id"].startswith("file-")
    examples = world.service.examples(ann, "support")
    assert [split for split, _ in examples] == ["train"] * 8 + ["eval"] * 3
    with world.db.read() as session:
        actions = list(session.scalars(select(AuditEntry.action)))
    assert "tuning.dataset.add" in actions


def test_a_malformed_file_stores_nothing(world: World) -> None:
    bad = GOOD + b"{broken\n" + jsonl(chat("x", "y")) + b'{"messages": []}\n'
    with pytest.raises(InvalidTrainingFile) as refused:
        world.service.add(world.people["ann"], "bad", bad, Format.CHAT, "bad.jsonl")
    assert [p.split(":")[0] for p in refused.value.problems] == ["line 13", "line 15"]
    for empty in (b"", b"\n\n"):
        with pytest.raises(InvalidTrainingFile, match="no example"):
            world.service.add(world.people["ann"], "empty", empty, Format.CHAT, "e.jsonl")
    assert _counts(world.db) == (0, 0)


def test_another_users_data_set_is_not_found_and_a_shared_one_is_read(world: World) -> None:
    ann, bob, root = (world.people[n] for n in ("ann", "bob", "root"))
    world.service.add(ann, "mine", GOOD, Format.CHAT, "m.jsonl")
    world.service.add(ann, "shared", GOOD, Format.CHAT, "s.jsonl", Options(share=["legal"]))
    for call in (world.service.show, world.service.examples, world.service.remove):
        with pytest.raises(NotFound, match="no data set 'mine'") as refused:
            call(bob, "mine")
        assert "ann" not in refused.value.message
    assert [d["name"] for d in world.service.datasets(bob)] == ["shared"]
    assert len(world.service.examples(bob, "shared")) == 11
    with pytest.raises(NotFound):  # shared to read, not to delete
        world.service.remove(bob, "shared")
    # the admin manages every data set but reads none that is not shared with a group of his
    assert {d["name"] for d in world.service.datasets(root)} == {"mine", "shared"}
    assert world.service.show(root, "mine")["examples"] == 11
    with pytest.raises(NotFound):
        world.service.examples(root, "mine")
    assert world.service.remove(root, "mine")["name"] == "mine"
    assert [d["name"] for d in world.service.datasets(ann)] == ["shared"]
    assert world.service.remove(ann, "shared")["examples"] == 11
    assert _counts(world.db) == (0, 0)


def _feedback(db: Database, user: str, rows: list[tuple[int, str | None, str | None]]) -> None:
    """Rated answers of `user`: (rating, answer kept or None, correction or None)."""
    now = time.time()
    with db.write() as session:
        user_id = session.scalars(select(User.id).where(User.name == user)).one()
        for i, (rating, answer, correction) in enumerate(rows):
            session.add(
                Feedback(
                    completion_id=f"chatcmpl-{i}",
                    user_id=user_id,
                    model="fake",
                    rating=rating,
                    correction=correction,
                    prompt=[{"role": "user", "content": f"question {i}"}] if answer else None,
                    answer=answer,
                    created_at=now,
                    updated_at=now - (90 * 86400 if i == 4 else 0),
                )
            )


def test_feedback_becomes_chat_examples_with_corrections_preferred(world: World) -> None:
    with pytest.raises(InvalidTrainingFile, match="no example"):  # no feedback yet
        world.service.from_feedback(local_operator(), "none", "30d", min_rating=1)
    _feedback(
        world.db,
        "ann",
        [
            (1, "good answer", None),
            (-1, "bad answer", "corrected answer"),
            (-1, "bad answer, no correction", None),
            (1, None, None),  # its text was not kept
            (1, "too old", None),
        ],
    )
    operator = local_operator()
    made = world.service.from_feedback(operator, "liked", "30d", min_rating=1)
    liked = [e["messages"][-1]["content"] for _, e in world.service.examples(operator, "liked")]
    assert made["format"] == "chat" and liked == ["good answer"]
    world.service.from_feedback(operator, "all", "30d", min_rating=-1)
    answers = [e["messages"] for _, e in world.service.examples(operator, "all")]
    assert answers == [
        [
            {"role": "user", "content": "question 0"},
            {"role": "assistant", "content": "good answer"},
        ],
        [
            {"role": "user", "content": "question 1"},
            {"role": "assistant", "content": "corrected answer"},
        ],
    ]
    old = world.service.from_feedback(operator, "old", "120d", min_rating=1)
    assert old["examples"] == 2  # the 90-day-old answer is inside this window


def _collection(db: Database, name: str, group: str, texts: list[str]) -> None:
    with db.write() as session:
        group_id = session.scalars(select(Group.id).where(Group.name == group)).one()
        collection = KnowledgeCollection(name=name, owner_group_id=group_id, created_at=0.0)
        session.add(collection)
        session.flush()
        session.add(GroupCollection(group_id=group_id, collection=name))
        document = KnowledgeDocument(
            collection_id=collection.id,
            source="handbook.md",
            content_hash="0" * 64,
            size=1,
            status="indexed",
            updated_at=0.0,
        )
        session.add(document)
        session.flush()
        for i, text in enumerate(texts):
            session.add(
                KnowledgeChunk(
                    document_id=document.id,
                    collection_id=collection.id,
                    ordinal=i,
                    text=text,
                    token_count=3,
                )
            )


def test_a_collection_becomes_text_examples_for_its_readers_only(world: World) -> None:
    _collection(world.db, "handbook", "support", ["Holidays: 30 days.", "Lunch at noon."])
    # keys see the collections granted when they are checked: check them after the grant
    ann, bob = (_principal(world.db, world.audit, name) for name in ("ann", "bob"))
    made = world.service.from_collection(ann, "handbook-text", "handbook", Options(redact=True))
    assert made["format"] == "text" and made["owner"] == "ann"
    texts = [e["text"] for _, e in world.service.examples(ann, "handbook-text")]
    assert texts == ["Holidays: 30 days.", "Lunch at noon."]
    with pytest.raises(NotFound, match="no collection named 'handbook'"):
        world.service.from_collection(bob, "stolen", "handbook")
    with pytest.raises(NotFound, match="no collection named 'nothing'"):
        world.service.from_collection(ann, "x", "nothing")
    assert _counts(world.db) == (1, 2)


def test_a_removed_data_set_leaves_no_trace_in_the_sqlite_files(
    world: World, db_url: str, tmp_path: Path
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the files of a PostgreSQL server are not the test's to read")
    canary = "canary-7f3e9d-the-vault-code-is-4711"
    data = jsonl(*(chat(f"What is secret {i}?", f"{canary} {i}") for i in range(50)))
    ann = world.people["ann"]
    world.service.add(ann, "secret", data, Format.CHAT, "s.jsonl")
    files = [p for p in tmp_path.iterdir() if p.name.startswith("store.db")]
    assert any(canary.encode() in p.read_bytes() for p in files)  # the check can see it
    world.service.remove(ann, "secret")
    files = [p for p in tmp_path.iterdir() if p.name.startswith("store.db")]
    assert files and not [p.name for p in files if canary.encode() in p.read_bytes()]
