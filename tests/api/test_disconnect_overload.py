"""A client that leaves stops its generation, streaming or not; overload is always a 503 with
Retry-After before any byte of a 200, never an error inside a stream that began."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

import httpx
import ollama
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from starlette.types import Message, Scope

from inhouse.api.generation.pipeline import EndingStream
from inhouse.api.watch import Ending
from inhouse.engine.request import TokenEvent
from tests.conftest import Served, fake_engine, health, serve_fake, wait_for
from tests.fakes import FakeRunner
from tests.governance.helpers import new_user_key, usage_rows

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
LONG = 3000  # tokens: 30 s at the fake's 10 ms a step, far beyond every wait below


def idle(served: Served) -> bool:
    state = health(served)
    return state["running"] == 0 and state["waiting"] == 0


def at_once(calls: list[Callable[[], None]]) -> None:
    """Run the calls on threads released together; re-raise the first failure."""
    gate = threading.Barrier(len(calls))
    failures: list[BaseException] = []

    def run(call: Callable[[], None]) -> None:
        gate.wait()
        try:
            call()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def openai_client(served: Served, key: str, timeout: float = 60.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.v1, api_key=key, max_retries=0, timeout=timeout)


def test_non_streaming_clients_that_time_out_abort_their_generations(tmp_path: Path) -> None:
    runner = FakeRunner(step_delay=0.01)
    with serve_fake(tmp_path, runner, max_running=4, max_queue=16) as served:
        client = openai_client(served, served.key, timeout=1.0)

        def impatient() -> None:
            with pytest.raises(openai.APITimeoutError):
                client.chat.completions.create(model="fake", messages=HI, max_tokens=LONG)

        at_once([impatient] * 5)
        wait_for(lambda: idle(served))
        metrics = httpx.get(served.base_url + "/metrics").text
        assert 'inhouse_running_sequences{model="fake"} 0.0' in metrics
        assert runner.live_samplers == 0
        wait_for(lambda: len(usage_rows(served)) == 5)
        rows = usage_rows(served)
        assert [row["status"] for row in rows] == ["aborted"] * 5
        assert all(row["completion_tokens"] < LONG for row in rows)
        assert served.app.state.inhouse.pool.num_pending == 0  # every lease given back
        reply = openai_client(served, served.key).completions.create(
            model="fake", prompt="Hi", max_tokens=5
        )
        assert reply.choices[0].text == "hello"


def test_a_non_streaming_completion_whose_client_leaves_is_aborted(tmp_path: Path) -> None:
    runner = FakeRunner(step_delay=0.01)
    with serve_fake(tmp_path, runner) as served:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                served.v1 + "/completions",
                headers={"Authorization": f"Bearer {served.key}"},
                json={"model": "fake", "prompt": "Hi", "max_tokens": LONG, "n": 2},
                timeout=1.0,
            )
        wait_for(lambda: idle(served))
        wait_for(lambda: len(usage_rows(served)) == 1)
        assert usage_rows(served)[0]["status"] == "aborted"
        assert runner.live_samplers == 0


def test_a_non_streaming_ollama_request_whose_client_leaves_is_aborted(tmp_path: Path) -> None:
    runner = FakeRunner(step_delay=0.01)
    with serve_fake(tmp_path, runner) as served:
        client = ollama.Client(
            host=served.base_url, headers={"Authorization": f"Bearer {served.key}"}, timeout=1.0
        )
        with pytest.raises(httpx.ReadTimeout):
            client.chat(model="fake", messages=HI, options={"num_predict": LONG})
        wait_for(lambda: idle(served))
        wait_for(lambda: len(usage_rows(served)) == 1)
        assert usage_rows(served)[0]["status"] == "aborted"
        assert runner.live_samplers == 0


def test_overload_is_a_503_before_the_stream_never_an_error_inside_it(tmp_path: Path) -> None:
    runner = FakeRunner(step_delay=0.01)
    answers: list[str] = []
    refusals: list[str] = []
    with serve_fake(tmp_path, runner, max_running=2, max_queue=4) as served:
        client = openai_client(served, served.key)

        def stream() -> None:
            try:
                chunks = client.chat.completions.create(
                    model="fake",
                    messages=HI,
                    max_tokens=20,
                    stream=True,
                )
            except openai.APIStatusError as exc:
                assert (exc.status_code, exc.code) == (503, "overloaded")
                refusals.append(exc.response.headers["retry-after"])
                return
            # an error event inside a 200 stream makes the client raise openai.APIError here
            answers.append("".join(c.choices[0].delta.content or "" for c in chunks))

        at_once([stream] * 60)
        assert len(answers) + len(refusals) == 60
        assert len(answers) >= 6  # max_running + max_queue were admitted and finished
        assert answers == [("hello world " * 2)[:20]] * len(answers)
        assert all(int(value) > 0 for value in refusals)
        wait_for(lambda: served.app.state.inhouse.pool.num_pending == 0)


def test_a_request_refused_by_its_quota_gives_its_engine_room_back(tmp_path: Path) -> None:
    with serve_fake(tmp_path, FakeRunner(), max_running=1, max_queue=0) as served:
        poor = new_user_key(served, "poor", tokens_per_day=1)
        for _ in range(3):
            with pytest.raises(openai.RateLimitError):
                openai_client(served, poor).chat.completions.create(
                    model="fake",
                    messages=HI,
                    max_tokens=5,
                )
        assert served.app.state.inhouse.pool.num_pending == 0
        reply = openai_client(served, served.key).chat.completions.create(
            model="fake",
            messages=HI,
            max_tokens=5,
        )
        assert reply.choices[0].message.content == "hello"


def test_a_bad_request_after_the_lease_gives_its_engine_room_back(tmp_path: Path) -> None:
    with serve_fake(tmp_path, FakeRunner(kv_cells=64), max_running=1, max_queue=0) as served:
        client = openai_client(served, served.key)
        for _ in range(3):
            with pytest.raises(openai.BadRequestError):
                client.chat.completions.create(model="fake", messages=HI, max_tokens=500)
        assert served.app.state.inhouse.pool.num_pending == 0
        reply = client.chat.completions.create(model="fake", messages=HI, max_tokens=5)
        assert reply.choices[0].message.content == "hello"


class Recorder:
    """A request watch that remembers the statuses it was ended with."""

    def __init__(self) -> None:
        self.statuses: list[int] = []

    def on_event(self, event: TokenEvent) -> None:
        pass

    def done(self, status: int) -> None:
        self.statuses.append(status)


async def test_a_stream_whose_client_left_before_its_first_chunk_still_ends() -> None:
    """The chunks never start, so only the response can end the request and free its room."""
    engine = fake_engine(FakeRunner())
    engine.start()
    watch = Recorder()
    end = Ending(watch, engine.reserve(1))
    started = False

    async def chunks() -> AsyncGenerator[bytes, None]:
        nonlocal started
        started = True
        yield b"data: {}\n\n"

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await asyncio.sleep(30)  # a client that stopped reading

    scope: Scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}}
    response = EndingStream(chunks(), end, "text/event-stream")
    await asyncio.wait_for(response(scope, receive, send), 10)
    assert not started and watch.statuses == [200] and engine.num_pending == 0
    end.done(500)  # a second end changes nothing
    assert watch.statuses == [200] and engine.num_pending == 0
    await asyncio.to_thread(engine.close)
