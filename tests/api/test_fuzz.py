"""Fuzzing the API's edges: random and hostile input gets a 2xx or a 4xx, never a 5xx.

Bodies go to every model endpoint (OpenAI's and Ollama's) of an app served over HTTP with
the fake model and the real embedder: random values in every field, random bodies, lone
surrogates, JSON nested 100,000 deep, random and hostile JSON schemas. Chat templates are
fuzzed in a child process, where a template that runs away cannot take the tests with it.
After each test a normal request still gets its answer: the engine keeps stepping.
Seeds are fixed: a failure names the case that reproduces it.
"""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from inhouse.api.middleware import has_lone_surrogate
from inhouse.engine.templates import ChatTemplate, UnsafeTemplate
from tests.api.fuzz_inputs import (
    BASES,
    FIELDS,
    HOSTILE_PATTERN,
    HOSTILE_TEMPLATES,
    HUGE_ENUM,
    LONE_SURROGATE,
    deep_text,
    encode,
    random_schema,
    random_string,
    random_template,
    random_value,
    with_field,
)
from tests.conftest import Served, serve_fake
from tests.fakes import FakeRunner

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_fake(tmp_path_factory.mktemp("fuzz"), FakeRunner(end_after=4)) as served:
        yield served


def json_client(served: Served) -> httpx.Client:
    headers = {"Authorization": f"Bearer {served.key}", "Content-Type": "application/json"}
    return httpx.Client(base_url=served.base_url, headers=headers, timeout=60)


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with json_client(served) as client:
        yield client
        assert_still_serving(client)


def assert_still_serving(client: httpx.Client) -> None:
    """The engine still steps: a normal request is answered, and /health says ok."""
    answer = client.post(CHAT, content=encode(BASES[CHAT]))
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]
    assert client.get("/health").status_code == 200


def check(response: httpx.Response, case: str) -> None:
    """A 2xx, or a 4xx whose body is the error JSON of the API that was called."""
    status = response.status_code
    assert status < 500, f"{case}: {status} {response.text[:300]}"
    assert 200 <= status < 300 or 400 <= status < 500, f"{case}: {status}"
    if status >= 400:
        error = response.json()["error"]
        if response.request.url.path.startswith("/api/"):
            assert isinstance(error, str) and error, case
        else:
            assert error["message"] and error["type"], case


def send(client: httpx.Client, path: str, body: bytes, case: str) -> httpx.Response:
    response = client.post(path, content=body)
    check(response, case)
    return response


def test_every_field_of_every_endpoint_takes_random_values(client: httpx.Client) -> None:
    rng = random.Random(13)
    for path, base in BASES.items():
        for field in FIELDS[path]:
            for round_ in range(3):
                value = random_value(rng)
                send(
                    client,
                    path,
                    encode(with_field(base, field, value)),
                    f"{path} {field} #{round_}",
                )


def test_random_bodies(client: httpx.Client) -> None:
    rng = random.Random(2026)
    paths = list(BASES)
    for i in range(200):
        path = rng.choice(paths)
        body: Any = BASES[path]
        for _ in range(rng.randint(1, 4)):
            body = with_field(body, rng.choice(FIELDS[path]), random_value(rng))
        raw = encode(body)
        kind = rng.random()
        if kind < 0.1:
            raw = raw[: rng.randint(0, len(raw))]  # cut short
        elif kind < 0.2:
            raw = bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 64)))
        elif kind < 0.3:
            raw = encode(random_value(rng))  # not an object, or not this endpoint's
        send(client, path, raw, f"body #{i} to {path}")


@pytest.mark.parametrize("path", list(BASES))
def test_a_lone_surrogate_in_any_field_is_400(client: httpx.Client, path: str) -> None:
    for field in FIELDS[path]:
        body = encode(with_field(BASES[path], field, "x" + LONE_SURROGATE))
        response = send(client, path, body, f"{path} {field}")
        assert response.status_code == 400, f"{path} {field}: {response.text}"
        assert "UTF-8" in response.text


@pytest.mark.parametrize("path", list(BASES))
def test_json_nested_a_hundred_thousand_deep_is_400(client: httpx.Client, path: str) -> None:
    fields = sorted({field.split(".")[0] for field in FIELDS[path]} - {"model"})
    for where in ["", *fields]:
        response = send(client, path, deep_text(where).encode(), f"{path} deep in {where!r}")
        assert response.status_code == 400, f"{path} {where}: {response.text}"


def schema_bodies(schema: Any, n: int, max_tokens: int) -> list[tuple[str, dict[str, Any]]]:
    """`schema` as an OpenAI response_format and as an Ollama format."""
    response_format = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    openai = {**BASES[CHAT], "response_format": response_format, "n": n, "max_tokens": max_tokens}
    ollama = with_field({**BASES["/api/chat"], "format": schema}, "options.num_predict", max_tokens)
    return [(CHAT, openai), ("/api/chat", ollama)]


def tool_bodies(schema: Any) -> list[tuple[str, dict[str, Any]]]:
    """`schema` as the parameters of a tool the model must call, on both APIs."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    openai = {**BASES[CHAT], "tools": tools, "tool_choice": "required"}
    return [(CHAT, openai), ("/api/chat", {**BASES["/api/chat"], "tools": tools})]


def test_the_pattern_that_stalled_the_engine_is_refused(client: httpx.Client) -> None:
    for path, body in schema_bodies(HOSTILE_PATTERN, 1, 3):
        response = send(client, path, encode(body), path)
        assert response.status_code == 400, f"{path}: {response.text[:300]}"
        if path == CHAT:
            assert response.json()["error"]["code"] == "invalid_schema"


def test_the_enum_that_stalled_the_engine_is_answered_or_refused(client: httpx.Client) -> None:
    """The 1,990-value enum now compiles to a shared-prefix tree that is cheap to match; the
    real model generating it next to a normal request is tests/api/test_grammar_limits.py."""
    for path, body in schema_bodies(HUGE_ENUM, 8, 16):
        response = send(client, path, encode(body), path)
        assert response.status_code in (200, 400), f"{path}: {response.text[:300]}"


def test_random_schemas(client: httpx.Client) -> None:
    rng = random.Random(99)
    for i in range(200):
        schema = random_schema(rng)
        for path, body in [*schema_bodies(schema, rng.choice([1, 2]), 8), *tool_bodies(schema)]:
            send(client, path, encode(body), f"schema #{i} on {path}: {json.dumps(schema)[:200]}")


# Renders each template of the list on stdin with a one-message conversation, under a CPU
# time limit and a memory cap, and prints one outcome per template: "ok", "typed" (an
# InhouseError or UnsafeTemplate), "slow", or the name of any other exception.
TEMPLATE_CHILD = """
import json, resource, signal, sys
from inhouse.engine.templates import ChatTemplate, UnsafeTemplate
from inhouse.errors import InhouseError

class Slow(BaseException):
    pass

def alarm(*_):
    raise Slow

resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
signal.signal(signal.SIGPROF, alarm)
for source in json.load(sys.stdin):
    signal.setitimer(signal.ITIMER_PROF, 5.0)
    try:
        ChatTemplate(source).render([{"role": "user", "content": "Hi"}])
        outcome = "ok"
    except (InhouseError, UnsafeTemplate):
        outcome = "typed"
    except Slow:
        outcome = "slow"
    except BaseException as exc:
        outcome = type(exc).__name__
    signal.setitimer(signal.ITIMER_PROF, 0)
    print(outcome, flush=True)
"""


def render_in_child(sources: list[str]) -> list[str]:
    child = subprocess.run(
        [sys.executable, "-c", TEMPLATE_CHILD],
        input=json.dumps(sources),
        capture_output=True,
        text=True,
        timeout=60 + 6 * len(sources),
    )
    assert child.returncode == 0, child.stderr[-2000:]
    return child.stdout.split()


def test_random_chat_templates_render_or_raise_typed_errors_quickly() -> None:
    rng = random.Random(5)
    sources = [random_template(rng) for _ in range(120)]
    outcomes = render_in_child(sources)
    bad = [(o, s) for o, s in zip(outcomes, sources, strict=True) if o not in ("ok", "typed")]
    assert not bad, bad[:5]


def test_the_templates_that_ran_away_are_stopped_with_a_typed_error() -> None:
    outcomes = render_in_child(HOSTILE_TEMPLATES)
    assert outcomes == ["typed"] * len(HOSTILE_TEMPLATES), list(
        zip(outcomes, HOSTILE_TEMPLATES, strict=False)
    )


@pytest.mark.parametrize("source", HOSTILE_TEMPLATES[:2], ids=["loop-10e10", "string-90MB"])
def test_a_served_model_with_a_runaway_template_answers_4xx(tmp_path: Path, source: str) -> None:
    try:
        ChatTemplate(source)
    except UnsafeTemplate:
        return  # refused when the model is imported, before it can be served
    runner = FakeRunner(end_after=4)
    runner.info = dataclasses.replace(runner.info, chat_template=source)
    with serve_fake(tmp_path / "home", runner) as served, json_client(served) as client:
        for path in (CHAT, "/api/chat"):
            response = client.post(path, content=encode(BASES[path]))
            check(response, path)
            assert response.status_code >= 400, response.text[:300]
        completion = client.post("/v1/completions", content=encode(BASES["/v1/completions"]))
        assert completion.status_code == 200, completion.text
        assert client.get("/health").status_code == 200


def test_random_strings_survive_a_round_trip(client: httpx.Client) -> None:
    """Text without lone surrogates (controls, BOMs, emoji, NULs) is text: the chat answers."""
    rng = random.Random(3)
    for i in range(30):
        text = random_string(rng)[:200].replace(LONE_SURROGATE, "").replace("\udfff", "") or "x"
        body = with_field(BASES[CHAT], "messages.0.content", text)
        response = send(client, CHAT, encode(body), f"text #{i} {text[:40]!r}")
        assert response.status_code == 200, response.text[:300]


@pytest.mark.parametrize(
    ("body", "lone"),
    [
        (b'{"a": "\\ud800"}', True),
        (b'{"a": "x\\uDC00"}', True),
        (b'{"\\ud800": 1}', True),
        ('{"a": "\ud800"}'.encode("utf-8", "surrogatepass"), True),
        ('{"a": "\ud800"}'.encode("utf-16-le", "surrogatepass"), True),
        (b'{"a": "\\uD83D\\uDE00"}', False),  # a pair: one emoji
        (b'{"a": "\\\\ud800"}', False),  # an escaped backslash, then letters
        (b'{"a": "\\ud800', False),  # not JSON: the route says so
        (b'{"a": "x"}', False),
    ],
)
def test_lone_surrogates_are_told_from_pairs_and_escaped_backslashes(
    body: bytes, lone: bool
) -> None:
    assert has_lone_surrogate(body) is lone
