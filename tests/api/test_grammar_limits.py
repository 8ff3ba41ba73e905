"""Structured output cannot stall the engine (issue 13), through the official clients on the
real model: schemas too costly to follow are 400 `invalid_schema` naming the limit, a normal
request completes next to the costliest accepted ones, and random schemas never get a 5xx."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.conftest import Served

ASK = [{"role": "user", "content": "Answer in JSON."}]
HI = [{"role": "user", "content": "Say hi."}]
HOSTILE: dict[str, dict[str, Any]] = {
    "optional items repeated 256 times": {"type": "string", "pattern": "^(a?){256}a{256}$"},
    "optional items repeated 128 times": {"type": "string", "pattern": "^(a?){128}a{128}$"},
    "1990 values, none starting alike": {"enum": [chr(0x4E00 + i) for i in range(1990)]},
    "split ambiguity": {"type": "string", "pattern": "^a{0,256}a{256}$"},
}
COSTLIEST_ACCEPTED: dict[str, dict[str, Any]] = {
    "1990-value enum": {"enum": [f"value-{i}" for i in range(1990)]},
    "pattern at the limit": {"type": "string", "pattern": "^a{0,62}a{62}$"},
    "wide union": {
        "anyOf": [
            {
                "type": "object",
                "properties": {"kind": {"const": f"kind{k}"}, "x": {"type": "integer"}},
                "required": ["kind", "x"],
            }
            for k in range(40)
        ]
    },
}


@pytest.fixture
def client(real_server: Served) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=real_server.v1, api_key=real_server.key, max_retries=0, timeout=300
    )


def structured(client: openai.OpenAI, schema: Any, n: int = 1, max_tokens: int = 3) -> Any:
    return client.chat.completions.create(  # type: ignore[call-overload]
        model="smollm2",
        messages=ASK,
        max_tokens=max_tokens,
        n=n,
        temperature=1.0,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )


def engine_steps(served: Served) -> int:
    text = httpx.get(
        served.base_url + "/metrics", headers={"Authorization": f"Bearer {served.key}"}
    ).text
    found = re.search(r'^inhouse_engine_steps_total\{model="smollm2"\} (\S+)$', text, re.M)
    assert found, text
    return int(float(found[1]))


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_schema_too_costly_to_follow_is_a_400_naming_the_limit(
    client: openai.OpenAI, name: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        structured(client, HOSTILE[name], n=8)
    assert info.value.code == "invalid_schema"
    assert info.value.param == "response_format"
    assert "limit" in str(info.value.message)


def test_ollama_format_too_costly_is_a_400(real_server: Served) -> None:
    api = ollama.Client(
        host=real_server.base_url, headers={"Authorization": f"Bearer {real_server.key}"}
    )
    with pytest.raises(ollama.ResponseError) as info:
        api.chat(model="smollm2", messages=ASK, format=HOSTILE["split ambiguity"])
    assert info.value.status_code == 400
    assert "MAX_STACKS" in info.value.error


def test_a_normal_request_completes_next_to_the_costliest_accepted_schemas(
    real_server: Served, client: openai.OpenAI
) -> None:
    before = engine_steps(real_server)
    with ThreadPoolExecutor(len(COSTLIEST_ACCEPTED)) as pool:
        costly = [
            pool.submit(structured, client, schema, 8 if "enum" in name else 2, 8)
            for name, schema in COSTLIEST_ACCEPTED.items()
        ]
        normal = client.chat.completions.create(model="smollm2", messages=HI, max_tokens=8)  # type: ignore[arg-type]
        assert normal.choices[0].message.content
        for future in costly:
            assert all(c.finish_reason in ("stop", "length") for c in future.result().choices)
    assert engine_steps(real_server) > before


# ----- fuzz ----------------------------------------------------------------------------------


def random_pattern(rng: random.Random, depth: int = 0) -> str:
    """A regex of the supported subset, often ambiguous, with large counts."""
    atoms: list[Callable[[], str]] = [
        lambda: rng.choice("ab"),
        lambda: rng.choice(["[a-c]", ".", "\\d", "[^x]"]),
        lambda: (
            "(" + "|".join(random_pattern(rng, depth + 1) for _ in range(rng.randint(1, 3))) + ")"
        ),
    ]
    parts = []
    for _ in range(rng.randint(1, 3)):
        atom = rng.choice(atoms[: 3 if depth < 2 else 2])()
        quantifier = rng.choice(["", "?", "*", "+", "{%d}", "{0,%d}", "{1,%d}"])
        if "%d" in quantifier:
            quantifier %= rng.choice([2, 8, 64, 128, 256])
        parts.append(atom + quantifier)
    return "".join(parts)


def random_schema(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    kind = rng.choice(["pattern", "enum", "anyOf", "object", "array", "integer", "string"])
    if depth >= 3:
        kind = rng.choice(["pattern", "enum", "integer"])
    if kind == "pattern":
        return {"type": "string", "pattern": "^" + random_pattern(rng) + "$"}
    if kind == "enum":
        size = rng.choice([3, 50, 400, 1990])
        base = rng.choice([0x61, 0x4E00])
        return {"enum": [chr(base + i % 26) * (1 + i // 26) for i in range(size)]}
    if kind == "anyOf":
        return {"anyOf": [random_schema(rng, depth + 1) for _ in range(rng.randint(2, 12))]}
    if kind == "object":
        names = [f"k{i}" for i in range(rng.randint(1, 12))]
        props = {k: random_schema(rng, depth + 1) for k in names}
        return {"type": "object", "properties": props, "required": names[: rng.randint(0, 2)]}
    if kind == "array":
        return {"type": "array", "items": random_schema(rng, depth + 1), "maxItems": 4}
    if kind == "integer":
        return {"type": "integer", "minimum": rng.randint(-500, 0), "maximum": rng.randint(0, 500)}
    return {"type": "string", "maxLength": rng.choice([4, 64, 1000])}


def test_random_and_hostile_schemas_get_only_200_or_4xx_and_the_engine_keeps_stepping(
    real_server: Served, client: openai.OpenAI
) -> None:
    rng = random.Random(13)
    schemas = [*HOSTILE.values(), *(random_schema(rng) for _ in range(40))]
    counts = [rng.choice([1, 4]) for _ in schemas]

    def status(schema: dict[str, Any], n: int) -> int:
        try:
            structured(client, schema, n=n)
        except openai.APIStatusError as exc:
            return exc.status_code
        return 200

    before = engine_steps(real_server)
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(status, schemas, counts))
    assert all(s == 200 or 400 <= s < 500 for s in statuses), statuses
    assert 200 in statuses and 400 in statuses
    normal = client.chat.completions.create(model="smollm2", messages=HI, max_tokens=4)  # type: ignore[arg-type]
    assert normal.choices[0].message.content
    assert engine_steps(real_server) > before
