"""Bad input gets a clear 4xx in OpenAI's error shape, and the server keeps serving."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Served

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
