"""Completions of /v1/chat/completions kept for feedback and tuning, with the official `openai`
client: kept only when the caller sends `store: true` or the admin setting
`tuning.keep_feedback_text` is on; rated through /v1/feedback by their own user only; turned
into chat examples by `from-feedback`; kept however the generation ends, never failing it."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import func, select, text

from inhouse.auth.authenticate import local_operator
from inhouse.store.tables import ApiKey, Feedback, StoredCompletion, User
from inhouse.tuning.service import DatasetService
from inhouse.tuning.sources import feedback_examples
from tests.conftest import Served, serve_fake, wait_for
from tests.fakes import FakeRunner
from tests.governance.helpers import new_user_key

SCRIPT = "Paris is the capital. "
ASKED: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
]


@dataclass
class Api:
    served: Served
    runner: FakeRunner
    ann: openai.OpenAI
    ben: openai.OpenAI

    def state(self) -> Any:
        return self.served.app.state.inhouse

    def stored(self) -> list[StoredCompletion]:
        """Every kept completion, once what was queued has been written."""
        assert self.state().pipeline.keeper.flush()
        with self.state().db.read() as session:
            return list(session.scalars(select(StoredCompletion).order_by(StoredCompletion.id)))


def rate(client: openai.OpenAI, completion_id: str, rating: int, **extra: Any) -> dict[str, Any]:
    """POST /v1/feedback through the official client (an error status raises its error)."""
    body = {"completion_id": completion_id, "rating": rating, **extra}
    reply: dict[str, Any] = client.post("/feedback", body=body, cast_to=dict[str, Any])
    return reply


@pytest.fixture
def api(tmp_path: Path, db_url: str, request: pytest.FixtureRequest) -> Iterator[Api]:
    """Ann and Ben, members with a key each; the fake model answers SCRIPT and stops."""
    runner = FakeRunner(script=SCRIPT.encode(), end_after=len(SCRIPT), step_delay=0.0)
    overrides = getattr(request, "param", {})
    with serve_fake(tmp_path / "home", runner, store_url=db_url, overrides=overrides) as served:
        clients = {
            name: openai.OpenAI(
                base_url=served.v1, api_key=new_user_key(served, name), max_retries=0
            )
            for name in ("ann", "ben")
        }
        yield Api(served, runner, clients["ann"], clients["ben"])


def test_a_stored_completion_is_rated_with_a_correction_and_becomes_a_chat_example(
    api: Api,
) -> None:
    reply = api.ann.chat.completions.create(
        model="fake", messages=ASKED, store=True, metadata={"ticket": "T-1"}
    )
    assert reply.choices[0].message.content == SCRIPT
    [kept] = api.stored()
    with api.state().db.read() as session:
        ann = session.scalars(select(User).where(User.name == "ann")).one()
        key = session.scalars(select(ApiKey).where(ApiKey.user_id == ann.id)).one()
    assert (kept.completion_id, kept.user_id, kept.key_id) == (reply.id, ann.id, key.id)
    assert (kept.model, kept.answer, kept.finish_reason) == ("fake", SCRIPT, "stop")
    assert kept.messages == ASKED and kept.meta == {"ticket": "T-1"}
    assert kept.created_at == reply.created

    better = "The capital of France is Paris."
    given = rate(api.ann, reply.id, -1, correction=better)
    assert given == {"completion_id": reply.id, "rating": -1, "correction": better, "model": "fake"}
    with api.state().db.read() as session:
        row = session.scalars(select(Feedback)).one()
        examples = feedback_examples(session, time.time() - 60, -1)
    assert row.prompt == ASKED and row.answer == SCRIPT  # kept: the user opted in
    assert examples == [{"messages": [*ASKED, {"role": "assistant", "content": better}]}]

    state = api.state()
    service = DatasetService(state.db, state.audit, state.settings.knowledge)
    made = service.from_feedback(local_operator(), "corrected", "1d", min_rating=-1)
    assert made["format"] == "chat"
    [(_, example)] = service.examples(local_operator(), "corrected")
    assert example["messages"][-1] == {"role": "assistant", "content": better}


def test_without_store_nothing_is_kept_and_its_feedback_is_not_found(api: Api) -> None:
    unasked = api.ann.chat.completions.create(model="fake", messages=ASKED)
    refused = api.ann.chat.completions.create(model="fake", messages=ASKED, store=False)
    assert unasked.choices[0].message.content == SCRIPT
    assert api.stored() == []
    for completion in (unasked, refused):
        with pytest.raises(openai.NotFoundError) as caught:
            rate(api.ann, completion.id, 1)
        assert caught.value.code == "completion_not_found"
    with api.state().db.read() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 0


def test_another_users_stored_completion_is_not_found(api: Api) -> None:
    reply = api.ann.chat.completions.create(model="fake", messages=ASKED, store=True)
    assert len(api.stored()) == 1
    with pytest.raises(openai.NotFoundError) as caught:
        rate(api.ben, reply.id, -1, correction="Ben's answer")
    assert caught.value.code == "completion_not_found"
    assert api.ben.get("/feedback", cast_to=dict[str, Any])["data"] == []
    assert rate(api.ann, reply.id, 1)["rating"] == 1


@pytest.mark.parametrize("api", [{"tuning": {"keep_feedback_text": True}}], indirect=True)
def test_the_admin_setting_keeps_every_completion_without_store(api: Api) -> None:
    asked: list[ChatCompletionMessageParam] = [
        {"role": "developer", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "What is the capital "}]},
    ]
    reply = api.ben.chat.completions.create(model="fake", messages=asked)
    [kept] = api.stored()
    assert (kept.completion_id, kept.answer, kept.messages) == (reply.id, SCRIPT, asked)
    assert rate(api.ben, reply.id, 1)["model"] == "fake"
    with api.state().db.read() as session:
        examples = feedback_examples(session, time.time() - 60, 1)
    assert examples == [
        {
            "messages": [
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "What is the capital "},
                {"role": "assistant", "content": SCRIPT},
            ]
        }
    ]


def test_a_streamed_completion_is_kept_under_its_chunks_id(api: Api) -> None:
    stream = api.ann.chat.completions.create(model="fake", messages=ASKED, store=True, stream=True)
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == SCRIPT and {c.id for c in chunks} == {chunks[0].id}
    [kept] = api.stored()
    assert (kept.completion_id, kept.answer, kept.finish_reason) == (chunks[0].id, SCRIPT, "stop")
    assert rate(api.ann, chunks[0].id, 1)["completion_id"] == chunks[0].id


def test_only_choice_0_is_kept_when_n_is_more_than_1(api: Api) -> None:
    reply = api.ann.chat.completions.create(model="fake", messages=ASKED, store=True, n=3)
    assert len(reply.choices) == 3
    [kept] = api.stored()
    assert kept.answer == reply.choices[0].message.content


def test_a_stream_cut_short_by_its_client_keeps_what_was_produced(
    tmp_path: Path, db_url: str
) -> None:
    """What the client saw is kept, with no finish_reason; the server keeps serving."""
    runner = FakeRunner(step_delay=0.01)
    with serve_fake(tmp_path / "home", runner, store_url=db_url) as served:
        key = new_user_key(served, "ann")
        client = openai.OpenAI(base_url=served.v1, api_key=key, max_retries=0)
        stream = client.chat.completions.create(
            model="fake", messages=ASKED, store=True, stream=True, max_tokens=3000
        )
        seen = ""
        for chunk in stream:
            seen += chunk.choices[0].delta.content or ""
            if len(seen) >= 12:
                break
        stream.close()
        keeper = served.app.state.inhouse.pipeline.keeper

        def kept() -> list[StoredCompletion]:
            keeper.flush()
            with served.app.state.inhouse.db.read() as session:
                return list(session.scalars(select(StoredCompletion)))

        wait_for(lambda: len(kept()) == 1, timeout=30)
        [row] = kept()
        assert row.completion_id == chunk.id and row.finish_reason is None
        assert row.answer.startswith(seen) and len(row.answer) < 3000
        again = client.chat.completions.create(model="fake", messages=ASKED, max_tokens=5)
        assert again.choices[0].message.content == "hello"


def test_a_completion_that_cannot_be_kept_is_still_answered_and_the_failure_logged(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with api.state().db.write() as session:
        session.execute(text("DROP TABLE stored_completions"))
    with caplog.at_level(logging.ERROR, logger="inhouse.store.writer"):
        reply = api.ann.chat.completions.create(model="fake", messages=ASKED, store=True)
        assert reply.choices[0].message.content == SCRIPT
        assert api.state().pipeline.keeper.flush()
    assert "cannot be written" in caplog.text
    streamed = api.ann.chat.completions.create(
        model="fake", messages=ASKED, store=True, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == SCRIPT


def test_bad_store_and_metadata_are_typed_errors(api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.ann.api_key}"}
    for extra in (
        {"store": "yes"},
        {"metadata": {f"k{i}": "v" for i in range(17)}},
        {"metadata": {"k": "v" * 513}},
    ):
        reply = httpx.post(
            api.served.v1 + "/chat/completions",
            headers=headers,
            json={"model": "fake", "messages": ASKED, **extra},
        )
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["type"] == "invalid_request_error"
    assert api.stored() == []
