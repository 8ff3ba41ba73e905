"""Structured output on llama.cpp: every generated grammar compiles, accepts exactly the
right texts, and constrains the real default model (SmolLM2-135M) to valid JSON that ends.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Iterator
from typing import Any

import llama_cpp as ll
import numpy as np
import pytest

from inhouse.engine.grammar import JSON_OBJECT_GRAMMAR, schema_to_grammar, validate_output
from inhouse.engine.request import FinishReason, SamplingParams
from inhouse.engine.runner import LlamaRunner
from inhouse.engine.sampler import SequenceSampler
from inhouse.engine.scheduler import Scheduler, StepPlan
from inhouse.engine.token_starts import TOKEN_DATA, TokenStarts, incomplete_tail, token_array
from inhouse.models.default import DefaultModelMissing, default_model_path
from tests.conftest import need
from tests.harness import Harness

CHAT = (
    "<|im_start|>system\nYou answer in JSON.<|im_end|>\n"
    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
PERSON = {
    "$defs": {
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 24},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["city"],
        }
    },
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user", "guest"]},
        "address": {"$ref": "#/$defs/address"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
        "email": {"type": "string", "maxLength": 32},
    },
    "required": ["name", "age", "role", "address", "tags"],
}
TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["name", "children"],
        }
    },
    "$ref": "#/$defs/node",
}
# schema -> (texts it must accept, texts it must refuse)
CASES: dict[str, tuple[dict[str, Any], list[str], list[str]]] = {
    "enum": ({"enum": ["red", 3, None]}, ['"red"', "3", "null"], ['"blue"', "4", "red"]),
    "strict object": (
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 5},
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                "nick": {"type": "string"},
            },
            "required": ["name", "age"],
        },
        [
            '{"name": "Al", "age": 30}',
            '{"name":"Al","age":0,"nick":"x"}',
            '{\n  "name": "",\n  "age": 150\n}',
        ],
        [
            '{"name": "Al"}',
            '{"name": "Al", "age": 3, "x": 1}',
            '{"name": "Alexander", "age": 3}',
            '{"name": "Al", "age": -1}',
            '{"name": "Al", "age": 151}',
        ],
    ),
    "map": (
        {"type": "object", "additionalProperties": {"type": "integer"}},
        ['{"a": 1, "b": -2}', "{}"],
        ['{"a": "x"}', '{"a": 1,}'],
    ),
    "bounded array": (
        {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3},
        ["[1]", "[1, 2, 3]"],
        ["[]", "[1, 2, 3, 4]", "[1.5]"],
    ),
    "tuple": (
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}], "items": False},
        ['["a"]', '["a", true]', "[]"],
        ["[true]", '["a", true, 1]'],
    ),
    "date": (
        {"type": "string", "format": "date"},
        ['"2024-01-31"', '"2023-02-28"'],
        ['"2024-13-01"', '"2024-02-30"', '"24-01-01"'],
    ),
    "date-time": (
        {"type": "string", "format": "date-time"},
        ['"2024-01-31T23:59:59Z"', '"2024-06-01T10:00:00.5+02:00"'],
        ['"2024-01-31 10:00:00"', '"2024-01-31T24:00:00Z"'],
    ),
    "time": ({"type": "string", "format": "time"}, ['"10:00:00Z"'], ['"10:00"']),
    "uuid": (
        {"type": "string", "format": "uuid"},
        ['"123e4567-e89b-12d3-a456-426614174000"'],
        ['"123e4567"', '"123e4567-e89b-12d3-a456-42661417400g"'],
    ),
    "pattern": (
        {"type": "string", "pattern": "^[A-Z]{3}-\\d{2,4}(\\.[a-z]+)?$"},
        ['"ABC-123"', '"XYZ-1234.ok"'],
        ['"ABC-1"', '"abc-123"', '"ABC-123."'],
    ),
    "pattern with quotes": (
        {"type": "string", "pattern": '^say "(hi|yo)"$'},
        ['"say \\"hi\\""'],
        ['"say hi"'],
    ),
    "anyOf": (
        {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 2}]},
        ["12", '"ab"'],
        ['"abc"', "true"],
    ),
    "allOf": (
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                {"properties": {"b": {"type": "boolean"}}, "required": ["b"]},
            ]
        },
        ['{"a": 1, "b": true}'],
        ['{"a": 1}', '{"b": true}'],
    ),
    "tree": (
        TREE,
        ['{"name": "r", "children": [{"name": "c", "children": []}]}'],
        ['{"name": "r"}', '{"name": "r", "children": [{}]}'],
    ),
    "definitions": (
        {
            "definitions": {"x": {"type": "boolean"}},
            "type": "array",
            "items": {"$ref": "#/definitions/x"},
        },
        ["[true, false]"],
        ["[1]"],
    ),
    "integer range": (
        {"type": "integer", "minimum": -20, "maximum": 150},
        ["-20", "0", "7", "150"],
        ["151", "-21", "1.0", "007"],
    ),
    "fraction": (
        {"type": "number", "minimum": 0, "maximum": 1},
        ["0.75", "1", "0"],
        ["1.5", "-0.1"],
    ),
    "odd keys": (
        {
            "type": "object",
            "properties": {'a"b': {"const": "é\n"}, "ü": {"type": "boolean"}},
            "required": ['a"b'],
        },
        ['{"a\\"b": "é\\n"}', '{"a\\"b":"é\\n","ü":true}'],
        ['{"ab": "é\\n"}', '{"a\\"b": "é"}'],
    ),
    "nullable": ({"type": ["string", "null"]}, ['"x"', "null"], ["1"]),
    "number": (
        {"type": "number"},
        ["-1.5e3", "0", "0.25"],
        ["01", "1.", "12345678901234567890", "+1"],
    ),
    "string": ({"type": "string"}, ['"a\\n\\"b\\u00e9 ü"'], ['"a\nb"', '"a\\x"']),
    "enum with shared prefixes": (
        {"enum": ["a", "ab", "abc", "b", 1, 12, None]},
        ['"a"', '"ab"', '"abc"', '"b"', "1", "12", "null"],
        ['"abcd"', '"c"', '""', "2", "123", '"a'],
    ),
    "const union": (
        {"anyOf": [{"const": "same"}, {"const": "sample"}, {"const": 1}]},
        ['"same"', '"sample"', "1"],
        ['"sam"', '"samples"', "2"],
    ),
    "object union": (
        {
            "anyOf": [
                {
                    "type": "object",
                    "properties": {"kind": {"const": k}, "x": {"type": "integer"}},
                    "required": ["kind"],
                }
                for k in ("cat", "car", "dog")
            ]
        },
        ['{"kind": "cat"}', '{"kind": "car", "x": 2}', '{"kind":"dog","x":-1}'],
        ['{"kind": "ca"}', '{"kind": "cow"}', '{"x": 1}', '{"kind": "cat", "y": 1}'],
    ),
    "ambiguous pattern within the limit": (
        {"type": "string", "pattern": "^a{0,3}a{3}$"},
        ['"aaa"', '"aaaaaa"'],
        ['"aa"', '"aaaaaaa"'],
    ),
    "person": (
        PERSON,
        [
            '{"name": "Ann", "age": 7, "role": "guest", '
            '"address": {"city": "Oslo", "zip": "01234"}, "tags": []}'
        ],
        ['{"name": "Ann", "age": 7, "role": "boss", "address": {"city": "Oslo"}, "tags": []}'],
    ),
}


class GrammarChecker:
    """llama.cpp's own grammar sampler, fed a text token by token: does the grammar accept it?"""

    def __init__(self, path: str) -> None:
        params = ll.llama_model_default_params()
        params.vocab_only = True
        self.model = ll.llama_model_load_from_file(path.encode(), params)
        assert self.model
        self.vocab = ll.llama_model_get_vocab(self.model)

    def compile(self, grammar: str) -> Any:
        return ll.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")

    def accepts(self, grammar: str, text: str) -> bool:
        sampler = self.compile(grammar)
        assert sampler, "llama.cpp refused the grammar"
        try:
            for token in [*self.tokenize(text), ll.llama_vocab_eos(self.vocab)]:
                if not self.allowed(sampler, token):
                    return False
                ll.llama_sampler_accept(sampler, token)
            return True
        finally:
            ll.llama_sampler_free(sampler)

    @staticmethod
    def allowed(sampler: Any, token: int) -> bool:
        candidate = ll.llama_token_data(token, 0.0, 0.0)
        array = ll.llama_token_data_array(ctypes.pointer(candidate), 1, -1, False)
        ll.llama_sampler_apply(sampler, ctypes.byref(array))
        return not math.isinf(candidate.logit)

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        out = (ll.llama_token * (len(data) + 8))()
        n = ll.llama_tokenize(self.vocab, data, len(data), out, len(data) + 8, False, False)
        return list(out[:n])

    def close(self) -> None:
        ll.llama_model_free(self.model)


def _model_path() -> str:
    try:
        return str(default_model_path())
    except DefaultModelMissing as exc:
        need(False, str(exc))
        raise


@pytest.fixture(scope="module")
def checker() -> Iterator[GrammarChecker]:
    checker = GrammarChecker(_model_path())
    yield checker
    checker.close()


@pytest.fixture(scope="module")
def runner() -> Iterator[LlamaRunner]:
    from pathlib import Path

    llama = LlamaRunner(
        Path(_model_path()), "smollm2", kv_cells=4096, n_batch=256, n_seq_max=12, n_threads=2
    )
    yield llama
    llama.close()


def generate(runner: LlamaRunner, runs: list[tuple[str, dict[str, Any]]], grammar: str) -> Harness:
    """Each (prompt, sampling settings) under `grammar`, all in one batch."""
    runner.execute(StepPlan(clear_slots=list(range(12))))
    h = Harness(runner, Scheduler(kv_cells=4096, max_running=12, n_batch=256, cache_slots=0))
    for i, (prompt, settings) in enumerate(runs):
        h.submit(str(i), CHAT.format(prompt), max_tokens=160, grammar=grammar, **settings)
    h.run()
    return h


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_grammar_accepts_valid_json_and_refuses_the_rest(
    checker: GrammarChecker, name: str
) -> None:
    schema, good, bad = CASES[name]
    grammar = schema_to_grammar(schema)
    for text in good:
        validate_output(text, schema)
        assert checker.accepts(grammar, text), text
    for text in bad:
        assert not checker.accepts(grammar, text), text


def test_json_object_grammar_takes_any_object_and_only_objects(checker: GrammarChecker) -> None:
    for text in ['{"a": [1, {"b": null}], "c": "d"}', "{}", '{\n  "x": true\n}']:
        assert checker.accepts(JSON_OBJECT_GRAMMAR, text)
    for text in ["[]", '"x"', '{"a": 1', '{"a": 1} trailing', "{" + " " * 40 + "}"]:
        assert not checker.accepts(JSON_OBJECT_GRAMMAR, text)


def test_large_bounds_still_compile(checker: GrammarChecker) -> None:
    schema = {
        "type": "array",
        "items": {"type": "string", "minLength": 200, "maxLength": 100_000},
        "maxItems": 10_000,
    }
    assert checker.compile(schema_to_grammar(schema))


GREEDY: dict[str, Any] = {"temperature": 0.0}
SAMPLED: dict[str, Any] = {"temperature": 1.0, "seed": 1}


def test_the_model_writes_valid_json_for_a_schema_and_ends(runner: LlamaRunner) -> None:
    prompts = [
        "Describe a user named Alice who is 30.",
        "Make up an admin user.",
        "Bob is 45 and lives in Berlin.",
    ]
    runs = [(p, settings) for settings in (GREEDY, SAMPLED) for p in prompts]
    h = generate(runner, runs, schema_to_grammar(PERSON))
    for i in range(len(runs)):
        assert h.final(str(i)).finish_reason is FinishReason.STOP, h.text(str(i))
        value = validate_output(h.text(str(i)), PERSON)
        assert value["role"] in ("admin", "user", "guest")


def test_the_model_writes_a_json_object_in_json_mode(runner: LlamaRunner) -> None:
    prompts = [
        'What is the capital of France? Answer as {"capital": ...}.',
        "Give the name and age of a fictional person.",
        "Make up an admin user.",
        "List two colors under the key colors.",
    ]
    runs = [(p, GREEDY) for p in prompts] + [(prompts[1], SAMPLED), (prompts[3], SAMPLED)]
    h = generate(runner, runs, JSON_OBJECT_GRAMMAR)
    assert validate_output(h.text("0"), None) == {"capital": "Paris"}
    for i in range(len(runs)):
        assert h.final(str(i)).finish_reason is FinishReason.STOP, h.text(str(i))
        assert isinstance(validate_output(h.text(str(i)), None), dict)


class SleepySampler(SequenceSampler):
    """Takes longer than the budget for every token, as a grammar too costly to follow would."""

    def sample(self, ctx: Any, row: int) -> int:
        time.sleep(0.6)
        return super().sample(ctx, row)


def test_a_sequence_whose_sampling_runs_over_budget_ends_alone(
    runner: LlamaRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = runner.new_sampler

    def new_sampler(params: SamplingParams) -> object:
        if params.seed == 13:
            return SleepySampler(runner._vocab, runner._n_vocab, params)
        return plain(params)

    monkeypatch.setattr(runner, "new_sampler", new_sampler)
    monkeypatch.setattr(runner, "max_sample_s", 0.5)
    runner.execute(StepPlan(clear_slots=list(range(12))))
    h = Harness(runner, Scheduler(kv_cells=4096, max_running=12, n_batch=256, cache_slots=0))
    h.submit("slow", CHAT.format("Say hi."), max_tokens=8, seed=13)
    h.submit("plain", CHAT.format("Say hi."), max_tokens=8, temperature=0.0)
    h.run()
    slow = h.final("slow")
    assert slow.finish_reason is FinishReason.ERROR
    assert slow.error is not None and "engine.max_sample_ms" in slow.error
    assert slow.completion_tokens == 1
    assert h.final("plain").finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
    assert h.text("plain")


COSTLIEST_ACCEPTED: dict[str, dict[str, Any]] = {
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
    "many optional members": {
        "type": "object",
        "properties": {f"field_{i}": {"type": ["string", "null"]} for i in range(50)},
    },
    "big enum": {"enum": [f"value-{i}" for i in range(1990)]},
}


def test_the_costliest_accepted_schemas_still_generate(runner: LlamaRunner) -> None:
    """Each runs 4 sampled sequences next to a free one: all of them finish."""
    for name, schema in COSTLIEST_ACCEPTED.items():
        grammar = schema_to_grammar(schema)
        runner.execute(StepPlan(clear_slots=list(range(12))))
        h = Harness(runner, Scheduler(kv_cells=4096, max_running=12, n_batch=256, cache_slots=0))
        for i in range(4):
            h.submit(str(i), CHAT.format("Answer."), max_tokens=12, grammar=grammar, seed=i)
        h.submit("free", CHAT.format("Say hi."), max_tokens=12, temperature=0.0)
        h.run()
        for rid in ("0", "1", "2", "3", "free"):
            assert h.final(rid).finish_reason is not FinishReason.ERROR, (name, h.final(rid))


def allowed_ids(sampler: Any, ids: Any) -> set[int]:
    """The tokens among `ids` that `sampler`'s grammar accepts now."""
    data = np.zeros(len(ids), dtype=TOKEN_DATA)
    data["id"] = ids
    ll.llama_sampler_apply(sampler, ctypes.byref(token_array(data)))
    return {int(t) for t in data["id"][np.isfinite(data["logit"])]}


def test_filtering_by_token_starts_gives_the_whole_vocabulary_mask(
    checker: GrammarChecker, runner: LlamaRunner
) -> None:
    """At every point of every accepted text: the narrowed filter allows exactly the tokens
    the filter of the whole vocabulary allows (the sampler relies on it)."""
    size = int(ll.llama_vocab_n_tokens(checker.vocab))
    starts = TokenStarts([runner.token_bytes(t) for t in range(size)], runner.is_end_of_generation)
    everything = np.arange(size, dtype=np.int32)
    for name, (schema, good, _) in CASES.items():
        for text in good:
            sampler = checker.compile(schema_to_grammar(schema))
            tail = b""
            for token in checker.tokenize(text):
                if not tail:
                    full = allowed_ids(sampler, everything)
                    assert allowed_ids(sampler, starts.candidates(sampler)) == full, name
                ll.llama_sampler_accept(sampler, token)
                tail = incomplete_tail(tail + starts.pieces[token])
            ll.llama_sampler_free(sampler)


def test_values_whose_characters_split_across_tokens_come_out_whole(runner: LlamaRunner) -> None:
    """Mid-character (a CJK character is several byte tokens here), the filter checks the
    whole vocabulary: the answer is still one of the values."""
    schema = {"enum": ["東京都", "大阪府", "京都府", "北海道"]}
    prompts = ["Name a Japanese prefecture.", "Where is Osaka?", "Pick one."]
    runs = [(p, {"temperature": 1.0, "seed": seed}) for p in prompts for seed in (1, 2, 3)]
    h = generate(runner, runs, schema_to_grammar(schema))
    for i in range(len(runs)):
        assert h.final(str(i)).finish_reason is FinishReason.STOP, h.text(str(i))
        assert validate_output(h.text(str(i)), schema) in schema["enum"]
