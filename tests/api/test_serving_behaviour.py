"""Serving behaviour a user notices under load and failure, over the FakeRunner."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import Served, health, serve_fake, wait_for
from tests.fakes import FakeRunner

HI = [{"role": "user", "content": "Hi"}]


def client_for(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.v1, api_key=served.key, max_retries=0)


def test_a_full_queue_answers_503_with_retry_after(tmp_path: Path) -> None:
    runner = FakeRunner(step_delay=0.02)
    with serve_fake(tmp_path, runner, max_running=1, max_queue=0) as served:
        client = client_for(served)
        stream = client.chat.completions.create(
            model="fake",
            messages=HI,
            max_tokens=200,
            stream=True,  # type: ignore[arg-type]
        )
        next(iter(stream))
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="fake", messages=HI, max_tokens=2)  # type: ignore[arg-type]
        assert info.value.status_code == 503
        assert info.value.response.headers["retry-after"]
        assert info.value.code == "overloaded"
        stream.close()
        wait_for(lambda: health(served)["running"] == 0)
        reply = client.chat.completions.create(model="fake", messages=HI, max_tokens=2)  # type: ignore[arg-type]
        assert reply.choices[0].message.content == "he"


def test_client_disconnect_aborts_the_sequence(tmp_path: Path) -> None:
    runner = FakeRunner(step_delay=0.01)
    with serve_fake(tmp_path, runner) as served:
        stream = client_for(served).chat.completions.create(
            model="fake",
            messages=HI,
            max_tokens=3000,
            stream=True,  # type: ignore[arg-type]
        )
        chunks = iter(stream)
        for _ in range(5):
            next(chunks)
        assert health(served)["running"] == 1
        stream.close()
        wait_for(lambda: health(served)["running"] == 0)
        assert runner.live_samplers == 0


def test_concurrent_streams_all_complete(tmp_path: Path) -> None:
    runner = FakeRunner(step_delay=0.002)
    results: list[str] = []
    with serve_fake(tmp_path, runner, max_running=4, max_queue=16) as served:
        client = client_for(served)

        def one() -> None:
            stream = client.chat.completions.create(
                model="fake",
                messages=HI,
                max_tokens=30,
                stream=True,  # type: ignore[arg-type]
            )
            results.append("".join(c.choices[0].delta.content or "" for c in stream))

        threads = [threading.Thread(target=one) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [("hello world " * 3)[:30]] * 12


def test_multibyte_text_is_streamed_as_valid_utf8(tmp_path: Path) -> None:
    script = "naïve café — 日本語 🙂 ".encode()
    with serve_fake(tmp_path, FakeRunner(script=script)) as served:
        stream = client_for(served).chat.completions.create(
            model="fake",
            messages=HI,
            max_tokens=len(script),
            stream=True,  # type: ignore[arg-type]
        )
        pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces) == script.decode()
    assert not any("\ufffd" in p for p in pieces)


def test_health_is_503_when_the_engine_thread_is_dead(tmp_path: Path) -> None:
    with serve_fake(tmp_path, FakeRunner()) as served:
        assert httpx.get(served.base_url + "/health").status_code == 200
        (loaded,) = served.app.state.inhouse.pool.loaded
        loaded.engine.stop()
        response = httpx.get(served.base_url + "/health")
        assert response.status_code == 503
        assert response.json()["status"] == "engine_dead"
        with pytest.raises(openai.InternalServerError):
            client_for(served).chat.completions.create(model="fake", messages=HI)  # type: ignore[arg-type]


def test_draining_server_refuses_new_work_with_503(tmp_path: Path) -> None:
    with serve_fake(tmp_path, FakeRunner()) as served:
        served.app.state.inhouse.draining = True
        response = httpx.post(
            served.v1 + "/chat/completions",
            json={"model": "fake", "messages": HI},
            headers={"Authorization": f"Bearer {served.key}"},
        )
        assert response.status_code == 503
        assert response.headers["retry-after"]
        assert httpx.get(served.base_url + "/health").status_code == 503


def test_metrics_count_requests_tokens_and_latency(tmp_path: Path) -> None:
    with serve_fake(tmp_path, FakeRunner()) as served:
        client_for(served).chat.completions.create(model="fake", messages=HI, max_tokens=7)  # type: ignore[arg-type]
        text = httpx.get(served.base_url + "/metrics").text
    assert 'inhouse_requests_total{endpoint="chat",status="200"} 1.0' in text
    assert 'inhouse_tokens_total{kind="completion"} 7.0' in text
    assert "inhouse_time_to_first_token_seconds_count 1.0" in text
    assert "inhouse_time_per_output_token_seconds_count 1.0" in text
    assert 'inhouse_queue_depth{model="fake"} 0.0' in text
    assert 'inhouse_running_sequences{model="fake"} 0.0' in text


def test_more_prompts_than_max_n_each_get_their_choice(tmp_path: Path) -> None:
    """`engine.max_n` limits choices per prompt, not the prompts of one completion request."""
    with serve_fake(tmp_path, FakeRunner()) as served:
        prompts = [f"prompt {i}" for i in range(12)]
        completion = client_for(served).completions.create(
            model="fake", prompt=prompts, max_tokens=2
        )
        assert sorted(c.index for c in completion.choices) == list(range(12))
        with pytest.raises(openai.BadRequestError) as refused:
            client_for(served).completions.create(model="fake", prompt="x", max_tokens=2, n=9)
        assert refused.value.body["param"] == "n"  # type: ignore[index]
