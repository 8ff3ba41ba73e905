"""The web chat's API over real HTTP: stored conversations, answers streamed through the one
generation pipeline and stored however they end, regenerate, feedback, and strangers kept
out (another user's conversation or answer is "not found" on every route)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from inhouse.api.app import create_app
from inhouse.auth.directory import Directory
from inhouse.engine.client import AsyncEngine
from inhouse.engine.request import GenerationRequest
from inhouse.models.resolver import SingleModel
from inhouse.store.tables import AuditEntry, Feedback, UsageRecord
from tests.conftest import Served, admin_key, fake_engine, make_settings, serve, wait_for
from tests.fakes import FakeRunner

SCRIPT = "Hello **world**, `code`. "
PASSWORDS = {"ann": "ann-password-1", "ben": "ben-password-1"}


@dataclass
class Chat:
    served: Served
    runner: FakeRunner
    prompts: list[str]  # every prompt the engine was given, as text
    users: dict[str, httpx.Client]  # signed-in browsers: session cookie + CSRF token

    def state(self) -> Any:
        return self.served.app.state.inhouse

    def __getitem__(self, user: str) -> httpx.Client:
        return self.users[user]


def _recording(runner: FakeRunner, prompts: list[str]) -> AsyncEngine:
    engine = fake_engine(runner)
    submit = engine.core.submit

    def record(request: GenerationRequest) -> None:
        prompts.append(bytes(t - 1 for t in request.prompt_tokens).decode())
        submit(request)

    engine.core.submit = record  # type: ignore[method-assign]
    return engine


def sign_in(served: Served, name: str) -> httpx.Client:
    client = httpx.Client(base_url=served.base_url, timeout=30)
    reply = client.post("/admin/login", json={"name": name, "password": PASSWORDS[name]})
    assert reply.status_code == 200, reply.text
    client.headers["x-csrf-token"] = reply.json()["csrf_token"]
    return client


@pytest.fixture
def chat(tmp_path: Path, db_url: str, request: pytest.FixtureRequest) -> Iterator[Chat]:
    """Ann and Ben, members, signed in; the fake model answers SCRIPT and stops."""
    runner = FakeRunner(script=SCRIPT.encode(), end_after=len(SCRIPT))
    prompts: list[str] = []
    # secure_cookies off: httpx sends the session cookie over plain http
    overrides = {"auth": {"secure_cookies": False}, **getattr(request, "param", {})}
    settings = make_settings(tmp_path / "home", store={"url": db_url}, **overrides)
    app = create_app(
        settings,
        resolver=SingleModel("fake", Path("/dev/null")),
        build=lambda spec: _recording(runner, prompts),
    )
    state = app.state.inhouse
    with state.db.write() as session:
        directory = Directory(session, state.audit, "test")
        directory.add_group("legal")
        for name, password in PASSWORDS.items():
            directory.add_user(name, password=password, groups=["legal"] if name == "ann" else [])
    with serve(app, admin_key(app)) as served:
        users = {name: sign_in(served, name) for name in PASSWORDS}
        yield Chat(served, runner, prompts, users)
        for client in users.values():
            client.close()


def events(reply: httpx.Response) -> list[dict[str, Any]]:
    """The SSE events of a whole streamed reply; the last line must be [DONE]."""
    lines = [line for line in reply.text.split("\n\n") if line]
    assert lines[-1] == "data: [DONE]", reply.text
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def new_conversation(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    reply = client.post("/v1/conversations", json={"model": "fake", **fields})
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


def say(client: httpx.Client, conversation: str, text: str) -> list[dict[str, Any]]:
    reply = client.post(f"/v1/conversations/{conversation}/messages", json={"content": text})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/event-stream")
    return events(reply)


def test_conversations_are_created_listed_searched_renamed_and_deleted(chat: Chat) -> None:
    ann = chat["ann"]
    first = new_conversation(ann, title="Quarterly numbers")
    assert first["title"] == "Quarterly numbers" and first["collections"] == []
    assert first["model"] == "fake" and first["id"].startswith("conv_")
    second = new_conversation(ann)
    assert second["title"] == ""
    say(ann, second["id"], "How do I bake SOURDOUGH bread at home, step by step?")

    listed = ann.get("/v1/conversations").json()["data"]
    assert [c["id"] for c in listed] == [second["id"], first["id"]]  # most recent first
    assert listed[0]["title"] == "How do I bake SOURDOUGH bread at home, step by step?"
    assert set(listed[0]) == {"id", "title", "model", "collections", "created_at", "updated_at"}
    by_text = ann.get("/v1/conversations", params={"q": "sourdough"}).json()["data"]
    by_title = ann.get("/v1/conversations", params={"q": "QUARTERLY"}).json()["data"]
    by_answer = ann.get("/v1/conversations", params={"q": "**world**"}).json()["data"]
    assert [c["id"] for c in by_text] == [second["id"]] == [c["id"] for c in by_answer]
    assert [c["id"] for c in by_title] == [first["id"]]
    for wildcard in ("%", "_"):  # LIKE's wildcards are searched for as text
        assert ann.get("/v1/conversations", params={"q": wildcard}).json()["data"] == []
    assert len(ann.get("/v1/conversations", params={"limit": 1}).json()["data"]) == 1

    renamed = ann.patch(f"/v1/conversations/{first['id']}", json={"title": "Q3"})
    assert renamed.status_code == 200 and renamed.json()["title"] == "Q3"
    assert ann.get(f"/v1/conversations/{first['id']}").json()["title"] == "Q3"

    assert ann.delete(f"/v1/conversations/{second['id']}").status_code == 204
    gone = ann.get(f"/v1/conversations/{second['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "conversation_not_found"
    assert [c["id"] for c in ann.get("/v1/conversations").json()["data"]] == [first["id"]]
    assert ann.get("/v1/conversations", params={"q": "sourdough"}).json()["data"] == []


def test_an_answer_streams_in_order_and_is_stored_as_streamed(chat: Chat) -> None:
    ann = chat["ann"]
    conversation = new_conversation(ann)["id"]
    got = say(ann, conversation, "Hi there")
    assert [e["type"] for e in got[:1]] == ["start"] and got[-1]["type"] == "end"
    assert {e["type"] for e in got[1:-1]} == {"delta"}
    start, end = got[0], got[-1]
    streamed = "".join(e["text"] for e in got[1:-1])
    assert streamed == SCRIPT
    assert start["completion_id"].startswith("chatcmpl-") and start["citations"] == []
    assert end["finish_reason"] == "stop"
    assert end["html"] == "<p>Hello <strong>world</strong>, <code>code</code>.</p>\n"
    stored = end["message"]
    assert stored["content"] == streamed and stored["role"] == "assistant"
    assert stored["finish_reason"] == "stop"
    assert stored["completion_id"] == start["completion_id"] and stored["html"] == end["html"]

    say(ann, conversation, "And again")
    whole = ann.get(f"/v1/conversations/{conversation}").json()
    messages = whole["messages"]
    assert [(m["ordinal"], m["role"]) for m in messages] == [
        (1, "user"),
        (2, "assistant"),
        (3, "user"),
        (4, "assistant"),
    ]
    assert messages[0]["content"] == "Hi there" and messages[0]["html"] is None
    assert messages[1] == stored
    # the history went to the model, through the pipeline, metered like any chat
    assert "Hi there" in chat.prompts[-1] and SCRIPT in chat.prompts[-1]
    assert "And again" in chat.prompts[-1]
    wait_for(lambda: len(_usage(chat)) == 2)
    assert all(row.endpoint == "web_chat" and row.user_id is not None for row in _usage(chat))


def _usage(chat: Chat) -> list[UsageRecord]:
    with chat.state().db.read() as session:
        return list(session.scalars(select(UsageRecord)))


def test_a_client_that_stops_mid_answer_leaves_the_partial_answer_stored(chat: Chat) -> None:
    chat.runner.end_after = 5000
    chat.runner.step_delay = 0.02
    ann = chat["ann"]
    conversation = new_conversation(ann)["id"]
    path = f"/v1/conversations/{conversation}/messages"
    seen: list[dict[str, Any]] = []
    with ann.stream("POST", path, json={"content": "Tell me a long story"}) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: {"):
                seen.append(json.loads(line.removeprefix("data: ")))
            if len(seen) >= 6:
                break  # the stop button: the fetch is aborted
    streamed = "".join(e["text"] for e in seen if e["type"] == "delta")

    def stored() -> list[dict[str, Any]]:
        found = ann.get(f"/v1/conversations/{conversation}").json()["messages"]
        return [m for m in found if m["role"] == "assistant"]

    wait_for(lambda: len(stored()) == 1)
    answer = stored()[0]
    assert answer["completion_id"] == seen[0]["completion_id"]
    assert answer["content"].startswith(streamed) and streamed
    assert len(answer["content"]) < 5000  # cut short: the generation was aborted
    assert answer["finish_reason"] == "stopped"  # and says so after a reload
    assert "Hello" in answer["html"]
    wait_for(lambda: not any(m.engine.stats().running for m in chat.state().pool.loaded))


def test_regenerate_replaces_the_last_answer(chat: Chat) -> None:
    ann = chat["ann"]
    conversation = new_conversation(ann)["id"]
    empty = ann.post(f"/v1/conversations/{conversation}/regenerate")
    assert empty.status_code == 400 and empty.json()["error"]["type"] == "invalid_request_error"
    first = say(ann, conversation, "Question one")[-1]["message"]
    chat.runner.script = b"A different answer."
    chat.runner.end_after = len(chat.runner.script)
    reply = ann.post(f"/v1/conversations/{conversation}/regenerate")
    got = events(reply)
    assert "".join(e["text"] for e in got if e["type"] == "delta") == "A different answer."
    again = got[-1]["message"]
    assert again["completion_id"] != first["completion_id"]
    assert again["ordinal"] == first["ordinal"]
    messages = ann.get(f"/v1/conversations/{conversation}").json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == "A different answer."
    prompt = chat.prompts[-1]
    assert "Question one" in prompt and SCRIPT not in prompt  # the old answer is not history


def test_another_users_conversation_is_not_found_on_every_route(chat: Chat) -> None:
    ann, ben = chat["ann"], chat["ben"]
    conversation = new_conversation(ann, title="Ann's secret plans")["id"]
    completion = say(ann, conversation, "my secret")[-1]["message"]["completion_id"]
    path = f"/v1/conversations/{conversation}"
    attempts = [
        ben.get(path),
        ben.patch(path, json={"title": "mine now"}),
        ben.patch(path, json={"model": "no-such-model"}),
        ben.delete(path),
        ben.post(f"{path}/messages", json={"content": "hello"}),
        ben.post(f"{path}/regenerate"),
        ben.post("/v1/feedback", json={"completion_id": completion, "rating": -1}),
    ]
    for reply in attempts:
        assert reply.status_code == 404, reply.text
        assert "secret" not in reply.text
    assert {r.json()["error"]["code"] for r in attempts[:-1]} == {"conversation_not_found"}
    assert ben.get("/v1/conversations").json()["data"] == []
    assert ben.get("/v1/conversations", params={"q": "secret"}).json()["data"] == []
    assert ben.get("/v1/feedback").json()["data"] == []
    mine = ann.get(path).json()
    assert mine["title"] == "Ann's secret plans" and len(mine["messages"]) == 2


def test_feedback_is_stored_replaced_and_audited_without_its_text(chat: Chat) -> None:
    ann = chat["ann"]
    conversation = new_conversation(ann)["id"]
    completion = say(ann, conversation, "What is 2+2?")[-1]["message"]["completion_id"]
    up = ann.post("/v1/feedback", json={"completion_id": completion, "rating": 1})
    assert up.status_code == 200
    assert up.json() == {
        "completion_id": completion,
        "rating": 1,
        "correction": None,
        "model": "fake",
    }
    better = {"completion_id": completion, "rating": -1, "correction": "It is 4."}
    assert ann.post("/v1/feedback", json=better).json()["correction"] == "It is 4."
    listed = ann.get("/v1/feedback").json()["data"]
    assert [(f["completion_id"], f["rating"], f["correction"]) for f in listed] == [
        (completion, -1, "It is 4.")
    ]
    with chat.state().db.read() as session:
        rows = list(session.scalars(select(Feedback)))
        audited = list(
            session.scalars(select(AuditEntry).where(AuditEntry.action == "feedback.record"))
        )
    assert len(rows) == 1 and rows[0].rating == -1 and rows[0].model == "fake"
    assert rows[0].prompt is None and rows[0].answer is None  # tuning.keep_feedback_text off
    assert [e.target for e in audited] == [completion, completion]
    assert all(e.actor == "user:ann" for e in audited)
    assert "It is 4." not in json.dumps([e.detail for e in audited])
    assert audited[-1].detail["correction"] is True and audited[-1].detail["rating"] == -1


@pytest.mark.parametrize("chat", [{"tuning": {"keep_feedback_text": True}}], indirect=True)
def test_feedback_keeps_prompt_and_answer_only_when_the_setting_is_on(chat: Chat) -> None:
    ann = chat["ann"]
    conversation = new_conversation(ann)["id"]
    say(ann, conversation, "First question")
    completion = say(ann, conversation, "Second question")[-1]["message"]["completion_id"]
    assert ann.post("/v1/feedback", json={"completion_id": completion, "rating": 1}).is_success
    with chat.state().db.read() as session:
        row = session.scalars(select(Feedback)).one()
    assert row.answer == SCRIPT
    assert row.prompt == [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": SCRIPT},
        {"role": "user", "content": "Second question"},
    ]


def test_bad_input_gets_typed_errors_and_the_server_keeps_serving(chat: Chat) -> None:
    ann = chat["ann"]
    conversation = new_conversation(ann)["id"]
    path = f"/v1/conversations/{conversation}"
    cases: list[tuple[httpx.Response, int]] = [
        (ann.post("/v1/conversations", json={}), 400),
        (ann.post("/v1/conversations", json={"model": "fake", "colour": "red"}), 400),
        (ann.post("/v1/conversations", json={"model": "fake", "collections": "x"}), 400),
        (ann.post("/v1/conversations", json={"model": "fake", "title": "t" * 201}), 400),
        (ann.post("/v1/conversations", json={"model": "no-such-model"}), 404),
        (ann.post("/v1/conversations", json={"model": "fake", "collections": ["nope"]}), 404),
        (ann.post("/v1/conversations", content=b"{not json", headers=_json()), 400),
        (ann.patch(path, json={"collections": ["nope"]}), 404),
        (ann.post(f"{path}/messages", json={"content": "   "}), 400),
        (ann.post(f"{path}/messages", json={"content": 5}), 400),
        (ann.post(f"{path}/messages", json={}), 400),
        (ann.get("/v1/conversations", params={"limit": 0}), 400),
        (ann.get("/v1/conversations", params={"limit": "many"}), 400),
        (ann.post("/v1/feedback", json={"completion_id": "x", "rating": 2}), 400),
        (ann.post("/v1/feedback", json={"completion_id": "x", "rating": "1"}), 400),
        (
            ann.post(
                "/v1/feedback", json={"completion_id": "x", "rating": 1, "correction": "c" * 32769}
            ),
            400,
        ),
        (ann.post("/v1/feedback", json={"completion_id": "chatcmpl-nope", "rating": 1}), 404),
        (httpx.get(chat.served.v1 + "/conversations"), 401),
        (
            httpx.post(
                chat.served.v1 + "/conversations", json={"model": "fake"}, cookies=ann.cookies
            ),
            403,
        ),
    ]
    for reply, status in cases:
        assert reply.status_code == status, (reply.request.url, reply.text)
        error = reply.json()["error"]
        assert error["message"] and error["type"]
    assert cases[-1][0].json()["error"]["code"] == "csrf_failed"
    assert ann.get(path).json()["messages"] == []  # nothing was stored by refused requests
    assert say(ann, conversation, "still here?")[-1]["type"] == "end"


def _json() -> dict[str, str]:
    return {"content-type": "application/json"}


def test_a_bearer_key_reaches_the_same_conversations(chat: Chat) -> None:
    state = chat.state()
    with state.db.write() as session:
        key = Directory(session, state.audit, "test").create_key("ann")[1]
    ann = chat["ann"]
    conversation = new_conversation(ann)["id"]
    by_key = httpx.get(
        chat.served.v1 + f"/conversations/{conversation}",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert by_key.status_code == 200 and by_key.json()["id"] == conversation


def test_a_conversation_grounded_on_a_collection_cites_it_and_keeps_the_citations(
    chat: Chat, tmp_path: Path
) -> None:
    canary = "The termination notice period of the Acme merger is forty-seven days."
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "merger.txt").write_text(canary)
    knowledge = chat.state().knowledge
    knowledge.create("test", "contracts", "legal")
    knowledge.add("test", "contracts", tmp_path / "docs")
    ann, ben = chat["ann"], chat["ben"]
    refused = ben.post("/v1/conversations", json={"model": "fake", "collections": ["contracts"]})
    assert refused.status_code == 404 and "no collection named 'contracts'" in refused.text
    conversation = new_conversation(ann, collections=["contracts", "contracts"])
    assert conversation["collections"] == ["contracts"]
    got = say(ann, conversation["id"], "What is the termination notice period?")
    cited = got[0]["citations"]
    assert [Path(c["source"]).name for c in cited] == ["merger.txt"]
    assert "forty-seven" in cited[0]["snippet"] and canary in chat.prompts[-1]
    assert got[-1]["message"]["citations"] == cited
    stored = ann.get(f"/v1/conversations/{conversation['id']}").json()["messages"][-1]
    assert stored["citations"] == cited


def test_a_generation_that_fails_midway_ends_in_an_error_event_and_keeps_the_partial_answer(
    chat: Chat,
) -> None:
    runner, execute = chat.runner, chat.runner.execute
    steps = 0

    def failing(plan: Any) -> Any:
        nonlocal steps
        steps += 1
        if steps == 8:
            raise RuntimeError("the accelerator fell over")
        return execute(plan)

    runner.execute = failing  # type: ignore[method-assign]
    ann = chat["ann"]
    conversation = new_conversation(ann)["id"]
    got = say(ann, conversation, "Hi")
    assert got[0]["type"] == "start" and got[-1]["type"] == "error"
    assert got[-1]["error"]["code"] == "generation_failed"
    assert "fell over" in got[-1]["error"]["message"]
    streamed = "".join(e["text"] for e in got if e["type"] == "delta")
    assert streamed and SCRIPT.startswith(streamed) and streamed != SCRIPT
    messages = ann.get(f"/v1/conversations/{conversation}").json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == streamed
    assert messages[1]["completion_id"] == got[0]["completion_id"]
    assert messages[1]["finish_reason"] == "error"
    runner.execute = execute  # type: ignore[method-assign]
    assert say(ann, conversation, "Again?")[-1]["type"] == "end"  # still serving
