"""/v1/files with the official openai client: a training file becomes a data set, a bad one
is refused with its line numbers and leaves nothing behind, another user's file is a 404."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import Served, serve_fake
from tests.fakes import FakeRunner
from tests.tuning.test_datasets import chat, jsonl

LIMIT_MB = 0.01  # tuning.max_file_mb: about 10 KiB
GOOD = jsonl(*(chat(f"question {i}?", f"answer {i}.") for i in range(20)), chat("q", "a"))
GOOD += jsonl(chat("q", "a"))


@dataclass
class Site:
    served: Served
    home: Path
    clients: dict[str, openai.OpenAI]  # ann, bob (members), root (the admin)

    def leftovers(self) -> list[Path]:
        uploads = self.home / "tuning" / "uploads"
        return list(uploads.iterdir()) if uploads.exists() else []


def _member(served: Served, name: str) -> str:
    headers = {"Authorization": f"Bearer {served.key}"}
    with httpx.Client(base_url=served.base_url, headers=headers, timeout=30) as admin:
        assert admin.post("/admin/users", json={"name": name}).status_code == 201
        reply = admin.post("/admin/keys", json={"user": name})
        assert reply.status_code == 201, reply.text
        key: str = reply.json()["key"]
        return key


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    home = tmp_path / "home"
    overrides = {"tuning": {"max_file_mb": LIMIT_MB}, "server": {"max_body_bytes": 1024}}
    with serve_fake(home, FakeRunner(), overrides=overrides) as served:
        keys = {"ann": _member(served, "ann"), "bob": _member(served, "bob"), "root": served.key}
        clients = {
            name: openai.OpenAI(base_url=served.v1, api_key=key, max_retries=0)
            for name, key in keys.items()
        }
        yield Site(served, home, clients)


def test_upload_list_retrieve_read_and_delete(site: Site) -> None:
    ann = site.clients["ann"]
    made = ann.files.create(file=("tickets.jsonl", GOOD), purpose="fine-tune")
    assert made.id.startswith("file-") and made.purpose == "fine-tune"
    assert made.filename == "tickets.jsonl" and made.status == "processed" and made.bytes > 0
    extra = made.model_extra or {}
    assert (extra["examples"], extra["duplicates"]) == (21, 1)  # larger than the body limit
    assert [f.id for f in ann.files.list()] == [made.id]
    assert ann.files.retrieve(made.id).filename == "tickets.jsonl"
    lines = ann.files.content(made.id).text.splitlines()
    assert len(lines) == 21 and '"assistant"' in lines[0]
    deleted = ann.files.delete(made.id)
    assert deleted.id == made.id and deleted.deleted
    assert list(ann.files.list()) == []
    with pytest.raises(openai.NotFoundError):
        ann.files.retrieve(made.id)
    assert site.leftovers() == []


def test_bad_files_are_refused_with_their_lines_and_leave_nothing(site: Site) -> None:
    ann = site.clients["ann"]
    no_answer = b'{"messages": [{"role": "user", "content": "Hi"}]}\n'
    cases = {
        "malformed": (jsonl(chat("a", "b"), "{oops", chat("c", "d"), "[]"), ["line 2", "line 4"]),
        "no assistant": (no_answer * 2, ["line 1", "line 2"]),
        "empty": (b"\n\n", ["no example"]),
    }
    for name, (data, said) in cases.items():
        with pytest.raises(openai.BadRequestError) as refused:
            ann.files.create(file=("bad.jsonl", data), purpose="fine-tune")
        error = refused.value.body
        assert isinstance(error, dict) and error["code"] == "invalid_training_file", name
        assert all(part in error["message"] for part in said), (name, error["message"])
    with pytest.raises(openai.BadRequestError, match="purpose"):
        ann.files.create(file=("t.jsonl", GOOD), purpose="batch")
    with pytest.raises(openai.APIStatusError) as too_large:
        ann.files.create(file=("big.jsonl", GOOD * 40), purpose="fine-tune")
    assert too_large.value.status_code == 413
    assert list(ann.files.list()) == [] and site.leftovers() == []
    assert ann.models.list().data  # the server still answers


def test_another_users_file_is_not_found_and_admins_manage_without_reading(site: Site) -> None:
    ann, bob, root = (site.clients[n] for n in ("ann", "bob", "root"))
    made = ann.files.create(file=("mine.jsonl", GOOD), purpose="fine-tune")
    for attempt in (bob.files.retrieve, bob.files.content, bob.files.delete):
        with pytest.raises(openai.NotFoundError) as refused:
            attempt(made.id)
        assert "ann" not in str(refused.value.body)
    assert list(bob.files.list()) == []
    assert [f.id for f in root.files.list()] == [made.id]
    assert root.files.retrieve(made.id).bytes == made.bytes
    with pytest.raises(openai.NotFoundError):
        root.files.content(made.id)
    assert root.files.delete(made.id).deleted
    assert list(ann.files.list()) == []


def test_a_text_file_is_paragraphs(site: Site) -> None:
    ann = site.clients["ann"]
    text = b"The canteen opens at noon.\n\nParking is behind building B.\n"
    made = ann.files.create(file=("handbook.txt", text), purpose="fine-tune")
    assert (made.model_extra or {})["format"] == "text"
    assert ann.files.content(made.id).text.splitlines() == [
        '{"text": "The canteen opens at noon."}',
        '{"text": "Parking is behind building B."}',
    ]
