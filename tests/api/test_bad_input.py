"""Bad input gets a clear 4xx in OpenAI's error shape, and the server keeps serving."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Served, serve_fake
from tests.fakes import FakeRunner

OK_MESSAGES = [{"role": "user", "content": "Hi"}]


def post(served: Served, body: bytes | str, path: str = "/v1/chat/completions") -> httpx.Response:
    headers = {"Authorization": f"Bearer {served.key}", "Content-Type": "application/json"}
    return httpx.post(served.base_url + path, content=body, headers=headers, timeout=60)


def chat_body(**fields: Any) -> str:
    return json.dumps({"model": "smollm2", "messages": OK_MESSAGES, **fields})


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and isinstance(error["message"], str)
    assert error["type"]
    if code is not None:
        assert error["code"] == code


@pytest.fixture(autouse=True)
def still_serving(real_server: Served) -> Any:
    yield
    ok = post(real_server, chat_body(max_tokens=1))
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("value", [-1, 0, "x", 1.5, None])
def test_bad_max_tokens(real_server: Served, value: Any) -> None:
    body = json.loads(chat_body())
    body["max_tokens"] = value
    if value is None:
        body["max_tokens"] = 10**9
        assert_openai_error(post(real_server, json.dumps(body)), 400, "context_length_exceeded")
        return
    response = post(real_server, json.dumps(body))
    assert_openai_error(response, 400)
    assert response.json()["error"]["param"] == "max_tokens"


def test_huge_n(real_server: Served) -> None:
    assert_openai_error(post(real_server, chat_body(n=10**4)), 400)


@pytest.mark.parametrize("raw", ["NaN", "-1", "Infinity", "3"])
def test_bad_temperature(real_server: Served, raw: str) -> None:
    body = chat_body(max_tokens=1)[:-1] + f', "temperature": {raw}}}'
    response = post(real_server, body)
    assert_openai_error(response, 400)
    assert response.json()["error"]["param"] == "temperature"


def test_ten_thousand_stop_strings(real_server: Served) -> None:
    stops = [f"s{i}" for i in range(10_000)]
    assert_openai_error(post(real_server, chat_body(stop=stops)), 400)


def test_unknown_model_is_404_model_not_found(real_server: Served) -> None:
    client = openai.OpenAI(base_url=real_server.v1, api_key=real_server.key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-5", messages=OK_MESSAGES)  # type: ignore[arg-type]
    assert info.value.code == "model_not_found"


def test_empty_messages(real_server: Served) -> None:
    assert_openai_error(post(real_server, chat_body(messages=[])), 400)


def test_top_level_array(real_server: Served) -> None:
    assert_openai_error(post(real_server, "[" + chat_body() + "]"), 400)


@pytest.mark.parametrize("body", ['{"model": "smollm2", "messages": [', "", "null", "{'a': 1}"])
def test_malformed_json(real_server: Served, body: str) -> None:
    assert_openai_error(post(real_server, body), 400)


def test_fifty_megabyte_body_is_413(real_server: Served) -> None:
    big = chat_body(messages=[{"role": "user", "content": "a" * (50 * 1024 * 1024)}])
    assert_openai_error(post(real_server, big), 413)


def test_prompt_longer_than_the_context_is_refused_not_truncated(real_server: Served) -> None:
    long_text = "word " * 9000
    response = post(real_server, chat_body(messages=[{"role": "user", "content": long_text}]))
    assert_openai_error(response, 400, "context_length_exceeded")
    assert "maximum context length" in response.json()["error"]["message"]


def test_invalid_utf8_bytes_in_content(real_server: Served) -> None:
    body = chat_body().encode().replace(b'"Hi"', b'"H\xff\xfei"')
    assert_openai_error(post(real_server, body), 400)


def test_lone_surrogate_in_content(real_server: Served) -> None:
    body = chat_body().replace('"Hi"', '"H\\ud800i"')
    assert_openai_error(post(real_server, body), 400)


def test_unsupported_content_part(real_server: Served) -> None:
    image = [{"type": "image_url", "image_url": {"url": "data:,"}}]
    assert_openai_error(
        post(real_server, chat_body(messages=[{"role": "user", "content": image}])), 400
    )


def test_bad_input_on_completions_too(real_server: Served) -> None:
    body = json.dumps({"model": "smollm2", "prompt": "x", "max_tokens": -5})
    assert_openai_error(post(real_server, body, "/v1/completions"), 400)


def test_unknown_route_is_openai_shaped_404(real_server: Served) -> None:
    response = httpx.get(real_server.base_url + "/v1/nothing-here")
    assert_openai_error(response, 404)


def assert_ollama_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert isinstance(response.json()["error"], str) and response.json()["error"]


LONE = "\\ud800"  # as it stands in the JSON text: an escape of an unpaired surrogate
ENUM_SCHEMA = {"type": "string", "enum": ["a", "X"]}
OLLAMA_CHAT = {"model": "smollm2", "messages": OK_MESSAGES}
ENUM_FORMAT = {"type": "json_schema", "json_schema": {"name": "e", "schema": ENUM_SCHEMA}}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/embeddings", json.dumps({"model": "all-minilm-l6-v2", "input": "HX"})),
        ("/v1/embeddings", json.dumps({"model": "all-minilm-l6-v2", "input": ["ok", "X"]})),
        ("/v1/embeddings", json.dumps({"model": "all-minilm-l6-v2", "input": ["a" * 2**19, "X"]})),
        ("/api/embed", json.dumps({"model": "all-minilm", "input": "X"})),
        ("/api/embeddings", json.dumps({"model": "all-minilm", "prompt": "X"})),
        ("/v1/chat/completions", chat_body(max_tokens=2, response_format=ENUM_FORMAT)),
        ("/v1/chat/completions", chat_body(model="smollm2X")),
        ("/api/chat", json.dumps({"model": "smollm2X", "messages": OK_MESSAGES})),
        ("/api/generate", json.dumps({"model": "X", "prompt": "Hi"})),
        ("/api/show", json.dumps({"model": "smollm2X"})),
        ("/api/chat", json.dumps({**OLLAMA_CHAT, "format": ENUM_SCHEMA, "stream": False})),
    ],
    ids=[
        "embeddings-input",
        "embeddings-input-item",
        "embeddings-half-megabyte",
        "ollama-embed-input",
        "ollama-embeddings-prompt",
        "response-format-enum-value",
        "openai-model-name",
        "ollama-chat-model-name",
        "ollama-generate-model-name",
        "ollama-show-model-name",
        "ollama-format-enum-value",
    ],
)
def test_a_lone_surrogate_anywhere_is_400(real_server: Served, path: str, body: str) -> None:
    response = post(real_server, body.replace("X", LONE), path)
    if path.startswith("/api/"):
        assert_ollama_error(response, 400)
    else:
        assert_openai_error(response, 400)
    assert "UTF-8" in response.text


def test_a_lone_surrogate_as_raw_bytes_is_400(real_server: Served) -> None:
    body = chat_body().encode().replace(b'"Hi"', b'"H\xed\xa0\x80i"')  # U+D800 as UTF-8 bytes
    assert_openai_error(post(real_server, body), 400)


def test_surrogate_pairs_and_escaped_backslashes_are_text(real_server: Served) -> None:
    body = chat_body(max_tokens=1).replace('"Hi"', '"\\ud83d\\ude00 \\\\ud800"')
    assert post(real_server, body).status_code == 200


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/v1/chat/completions"])
@pytest.mark.parametrize("where", ["body", "field"])
def test_json_nested_a_hundred_thousand_deep_is_400(
    real_server: Served, path: str, where: str
) -> None:
    body = DEEP if where == "body" else '{"model": "smollm2", "options": ' + DEEP + "}"
    response = post(real_server, body, path)
    if path.startswith("/api/"):
        assert_ollama_error(response, 400)
    else:
        assert_openai_error(response, 400)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket timeout: a hang)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_a_body_that_never_arrives_gets_408_and_the_connection_closed(tmp_path: Path) -> None:
    overrides = {"server": {"body_timeout_s": 0.5}}
    with serve_fake(tmp_path / "home", FakeRunner(), overrides=overrides) as served:
        port = int(served.base_url.rsplit(":", 1)[1])
        head = (
            "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
            f"Authorization: Bearer {served.key}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n"
        )
        sockets = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(20)]
        for i, sock in enumerate(sockets):
            sock.sendall(head.encode() + b'{"model": "fake"'[: i % 8])
        for sock in sockets:
            with sock:
                reply = read_until_closed(sock)
            assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
            assert b"request_timeout" in reply
        ok = httpx.post(
            served.v1 + "/chat/completions",
            json={"model": "fake", "messages": OK_MESSAGES, "max_tokens": 2},
            headers={"Authorization": f"Bearer {served.key}"},
        )
        assert ok.status_code == 200, ok.text
