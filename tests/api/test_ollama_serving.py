"""Ollama API behaviour around the model's life and the connection, over the FakeRunner."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import ollama

from tests.conftest import Served, health, serve_fake, wait_for
from tests.fakes import FakeRunner

HI = [{"role": "user", "content": "Hi"}]


def client_for(served: Served) -> ollama.Client:
    return ollama.Client(host=served.base_url, headers={"Authorization": f"Bearer {served.key}"})


def loaded(client: ollama.Client) -> list[str | None]:
    return [m.model for m in client.ps().models]


def test_client_disconnect_aborts_generation(tmp_path: Path) -> None:
    runner = FakeRunner(step_delay=0.01)
    with serve_fake(tmp_path, runner) as served:
        chunks = client_for(served).generate(
            model="fake", prompt="Hi", stream=True, options={"num_predict": 3000}
        )
        for _ in range(5):
            assert next(chunks).done is False
        assert health(served)["running"] == 1
        chunks.close()  # type: ignore[attr-defined]
        wait_for(lambda: health(served)["running"] == 0)
        assert runner.live_samplers == 0


def test_keep_alive_zero_unloads_and_an_empty_request_loads(tmp_path: Path) -> None:
    with serve_fake(tmp_path, FakeRunner()) as served:
        client = client_for(served)
        assert loaded(client) == ["fake"]
        unloaded = client.generate(model="fake", prompt="", keep_alive=0)
        assert (unloaded.done, unloaded.done_reason) == (True, "unload")
        assert loaded(client) == []
        assert health(served)["models"] == []
        again = client.chat(model="fake", messages=[], keep_alive="5m")
        assert (again.done, again.done_reason) == (True, "load")
        assert loaded(client) == ["fake"]


def test_keep_alive_zero_with_a_prompt_answers_then_unloads(tmp_path: Path) -> None:
    with serve_fake(tmp_path, FakeRunner()) as served:
        client = client_for(served)
        reply = client.chat(model="fake", messages=HI, keep_alive=0, options={"num_predict": 5})
        assert reply.message.content == "hello"
        assert loaded(client) == []
        reply = client.chat(model="fake", messages=HI, options={"num_predict": 5})
        assert reply.message.content == "hello"
        assert loaded(client) == ["fake"]


def test_num_predict_minus_one_and_minus_two_run_to_the_end(tmp_path: Path) -> None:
    with serve_fake(tmp_path, FakeRunner(end_after=7)) as served:
        client = client_for(served)
        for num_predict in (-1, -2, 0):
            reply = client.generate(model="fake", prompt="Hi", options={"num_predict": num_predict})
            assert (reply.response, reply.done_reason) == ("hello w", "stop")


def test_a_model_name_with_latest_tag_is_served(tmp_path: Path) -> None:
    with serve_fake(tmp_path, FakeRunner()) as served:
        reply = client_for(served).generate(
            model="fake:latest", prompt="Hi", options={"num_predict": 2}
        )
        assert (reply.model, reply.response) == ("fake:latest", "he")


def test_tags_without_a_model_store_lists_the_served_name(tmp_path: Path) -> None:
    with serve_fake(tmp_path, FakeRunner()) as served:
        models = client_for(served).list().models
        assert models[0].model == "fake"
        assert {m.model for m in models[1:]} <= {"all-minilm-l6-v2"}  # the embedding model
        assert models[0].details is not None and models[0].details.format == "gguf"


def test_openai_routes_keep_openai_error_shape(tmp_path: Path) -> None:
    with serve_fake(tmp_path, FakeRunner()) as served:
        headers = {"Authorization": f"Bearer {served.key}"}
        body = json.dumps({"messages": HI})
        v1 = httpx.post(served.v1 + "/chat/completions", content=body, headers=headers)
        assert v1.status_code == 400
        assert v1.json()["error"]["type"] == "invalid_request_error"
        api = httpx.post(served.base_url + "/api/chat", content=body, headers=headers)
        assert (api.status_code, api.json()) == (400, {"error": "model is required"})
        missing = httpx.post(served.base_url + "/api/pull", content="{}", headers=headers)
        assert missing.status_code == 404 and isinstance(missing.json()["error"], str)
