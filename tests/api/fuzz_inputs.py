"""Deterministic generators of hostile and random API inputs for tests/api/test_fuzz.py.

Every generator takes a `random.Random`, so a failing case is reproduced by its seed.
"""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

LONE_SURROGATE = "\ud800"
DEEP = 100_000  # levels of nesting that json.loads cannot recurse through

# a body that works on each endpoint, served by the fake model ("fake") or the embedder
BASES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "model": "fake",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 4,
    },
    "/v1/completions": {"model": "fake", "prompt": "Hi", "max_tokens": 4},
    "/v1/embeddings": {"model": "all-minilm-l6-v2", "input": "Hi"},
    "/api/chat": {
        "model": "fake",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": False,
        "options": {"num_predict": 4},
    },
    "/api/generate": {
        "model": "fake",
        "prompt": "Hi",
        "stream": False,
        "options": {"num_predict": 4},
    },
    "/api/embed": {"model": "all-minilm", "input": "Hi"},
}

_SAMPLING = [
    "max_tokens", "temperature", "top_p", "n", "stop", "seed", "presence_penalty",
    "frequency_penalty", "stream", "stream_options", "user", "top_k", "min_p",
    "repetition_penalty", "logit_bias",
]  # fmt: skip
_OPTIONS = [
    "options", "options.temperature", "options.top_p", "options.top_k", "options.min_p",
    "options.seed", "options.num_predict", "options.stop", "options.repeat_penalty",
    "options.presence_penalty", "options.frequency_penalty", "options.num_ctx",
]  # fmt: skip
_OLLAMA = ["model", "stream", "format", "keep_alive", "think", "logprobs", *_OPTIONS]

# every field each endpoint reads, as dotted paths ("messages.0.content": an item's field)
FIELDS: dict[str, list[str]] = {
    "/v1/chat/completions": [
        "model", "messages", "messages.0", "messages.0.role", "messages.0.content",
        "messages.0.name", "messages.0.tool_calls", "messages.0.tool_call_id",
        "max_completion_tokens", "logprobs", "top_logprobs", "response_format",
        "response_format.type", "response_format.json_schema",
        "response_format.json_schema.schema", "tools", "tool_choice", "parallel_tool_calls",
        *_SAMPLING,
    ],
    "/v1/completions": [
        "model", "prompt", "logprobs", "echo", "suffix", "best_of", *_SAMPLING,
    ],
    "/v1/embeddings": ["model", "input", "input.0", "encoding_format", "dimensions", "user"],
    "/api/chat": [
        *_OLLAMA, "messages", "messages.0", "messages.0.role", "messages.0.content",
        "messages.0.images", "messages.0.tool_calls", "tools",
    ],
    "/api/generate": [
        *_OLLAMA, "prompt", "suffix", "system", "template", "context", "raw", "images",
    ],
    "/api/embed": ["model", "input", "input.0", "dimensions", "truncate", *_OPTIONS[:3]],
}  # fmt: skip

_WORDS = ["", " ", "a", "fake", "smollm2", "user", "{", "}", '"', "\\", "\x00", "\u2028"]
_CHARS = "aZ09 _-{}[]\"'\\:,.\n\t\x00\x7f\u00e9\u4e2d\U0001f600\ufeff\ud800\udfff"


def random_string(rng: random.Random) -> str:
    """Short text from a hostile alphabet (controls, a BOM, lone surrogates), or a big one."""
    roll = rng.random()
    if roll < 0.05:
        return rng.choice("ab\ud800") * rng.choice([10_000, 300_000])
    if roll < 0.3:
        return rng.choice(_WORDS)
    return "".join(rng.choice(_CHARS) for _ in range(rng.randint(0, 12)))


def random_number(rng: random.Random) -> Any:
    return rng.choice(
        [0, 1, -1, 2, 3, 7, 20, 2**31, 2**63, -(2**63), 10**30, 0.5, -0.0, 1e308, 1e-320,
         float("nan"), float("inf"), rng.randint(-5, 5000), rng.uniform(-3, 3)]
    )  # fmt: skip


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value: scalars of every type, containers, now and then a very deep one."""
    roll = rng.random()
    if roll < 0.02:
        return nested(rng.choice([50, 400]), rng.random() < 0.5)
    if roll < 0.15:
        return rng.choice([None, True, False])
    if roll < 0.4:
        return random_number(rng)
    if roll < 0.7 or depth > 3:
        return random_string(rng)
    if roll < 0.85:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = [*_WORDS, "type", "role", "content", "text", "name", "function", "properties"]
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def nested(depth: int, as_list: bool) -> Any:
    """A value `depth` levels deep, built without recursion."""
    value: Any = []
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


def with_field(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `body` with the dotted `path` set to `value` (containers made as needed)."""
    result: dict[str, Any] = json.loads(json.dumps(body))
    keys: list[Any] = [int(part) if part.isdigit() else part for part in path.split(".")]
    target: Any = result
    for key, following in itertools.pairwise(keys):
        child = _get(target, key)
        if not isinstance(child, dict | list):
            child = [] if isinstance(following, int) else {}
            _set(target, key, child)
        target = child
    _set(target, keys[-1], value)
    return result


def _get(container: Any, key: Any) -> Any:
    if isinstance(container, list):
        return container[key] if isinstance(key, int) and key < len(container) else None
    return container.get(key)


def _set(container: Any, key: Any, value: Any) -> None:
    if isinstance(container, list):
        container.extend([None] * (key + 1 - len(container)))
    container[key] = value


def encode(body: Any) -> bytes:
    """JSON as a client sends it; lone surrogates become `\\ud800` escapes, NaN stays NaN."""
    return json.dumps(body).encode()


def deep_text(where: str) -> str:
    """JSON text nested DEEP levels: the whole body, or the value of field `where`."""
    inner = "[" * DEEP + "]" * DEEP
    return inner if not where else json.dumps({"model": "fake", where: 0})[:-2] + inner + "}"


# the inputs issue 13 names, item 1: each froze or stalled the engine before it was refused
HOSTILE_PATTERN = {"type": "string", "pattern": "^(a?){256}a{256}$"}
HUGE_ENUM = {"type": "string", "enum": [f"value-{i:04d}-" + "x" * 40 for i in range(1990)]}


def random_schema(rng: random.Random, depth: int = 0) -> Any:
    """A JSON schema of any shape, sound or not: types, bounds, patterns, refs, combinators."""
    kind = rng.choice(
        ["string", "integer", "number", "boolean", "null", "object", "array", "enum", "const",
         "anyOf", "oneOf", "allOf", "ref", "junk", "pattern", "format", "multi"]
    )  # fmt: skip
    containers = ("object", "array", "anyOf", "oneOf", "allOf", "ref")
    if depth > 3 and kind in containers:
        kind = "string"
    width = rng.randint(0, 3) if kind in containers else 0
    sub = [random_schema(rng, depth + 1) for _ in range(width)]
    bound = rng.choice([0, 1, 3, 64, 10**6, -1, "x", None, 2.5])
    return {
        "string": {"type": "string", "minLength": bound, "maxLength": rng.choice([0, 5, bound])},
        "integer": {"type": "integer", "minimum": bound, "maximum": random_number(rng)},
        "number": {"type": "number", "exclusiveMinimum": random_number(rng), "multipleOf": bound},
        "boolean": {"type": "boolean"},
        "null": {"type": "null"},
        "object": {
            "type": "object",
            "properties": {random_string(rng): s for s in sub},
            "required": [random_string(rng)] if rng.random() < 0.5 else [],
            "additionalProperties": rng.choice([True, False, {"type": "integer"}]),
            "minProperties": bound,
        },
        "array": {
            "type": "array",
            "items": sub[0] if sub else {},
            "prefixItems": sub[1:],
            "minItems": bound,
            "maxItems": rng.choice([0, 2, 100, bound]),
            "uniqueItems": rng.random() < 0.3,
        },
        "enum": {"enum": [random_value(rng, 3) for _ in range(rng.randint(0, 6))]},
        "const": {"const": random_value(rng, 2)},
        "anyOf": {"anyOf": sub},
        "oneOf": {"oneOf": sub},
        "allOf": {"allOf": sub},
        "ref": {"$defs": {"d": sub[0] if sub else {"$ref": "#/$defs/d"}}, "$ref": "#/$defs/d"},
        "junk": random_value(rng),
        "pattern": {"type": "string", "pattern": random_pattern(rng)},
        "format": {"type": "string", "format": rng.choice(["date", "uuid", "email", "x"])},
        "multi": {"type": ["string", "integer", "null", "object"][: rng.randint(1, 4)]},
    }[kind]


def random_pattern(rng: random.Random) -> str:
    """A regular expression from pieces, with quantifiers that can blow up when nested."""
    atoms = ["a", "[a-z]", "\\d", ".", "(a|b)", "(a?)", "[^x]", "\\w+", "(ab)*", "\\\\", "["]
    quantifiers = ["", "?", "*", "+", "{3}", "{2,5}", "{0,300}", "{256}"]
    body = "".join(rng.choice(atoms) + rng.choice(quantifiers) for _ in range(rng.randint(1, 5)))
    return rng.choice(["", "^"]) + body + rng.choice(["", "$"])


_TEMPLATE_PIECES = [
    "{{ messages[0]['content'] }}",
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}",
    "{% for i in range(N) %}{% for j in range(N) %}x{% endfor %}{% endfor %}",
    "{{ 'x' * N }}",
    "{{ ('ab' * N) * N }}",
    "{% set ns = namespace(s='a') %}{% for i in range(N) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s | length }}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "{{ messages | tojson }}",
    "{{ raise_exception('no') }}",
    "{{ messages[N] }}",
    "{{ undefined_name.attr }}",
    "{% if add_generation_prompt %}<|assistant|>{% endif %}",
    "{{ messages[0].__class__ }}",
    "{{ range(N) | list | join(',') }}",
    "{% for",
    "{{ strftime_now('%Y') }}",
    "{{ (messages | map(attribute='content') | join) * N }}",
    "{{ '%s' | format(N) }}",
]


def random_template(rng: random.Random) -> str:
    """A chat template assembled from sound, failing, unsafe and explosive pieces."""
    pieces = [rng.choice(_TEMPLATE_PIECES) for _ in range(rng.randint(1, 4))]
    return "".join(p.replace("N", str(rng.choice([0, 3, 1000, 100_000, 10**9]))) for p in pieces)


# the templates issue 13 names, item 2: a loop of 10^10 steps, and a 90 MB string
HOSTILE_TEMPLATES = [
    "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "{{ 'x' * 90000000 }}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s }}",
]
