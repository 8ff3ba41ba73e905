"""JSON schema -> grammar, without a model: what is refused, and why; the output check.

Whether the produced grammars compile and accept the right texts is checked against
llama.cpp itself in tests/engine/test_grammar_llama.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from inhouse.engine.grammar import (
    JSON_OBJECT_GRAMMAR,
    InvalidOutput,
    schema_to_grammar,
    validate_output,
)
from inhouse.errors import InvalidRequest, InvalidSchema

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


def refusal(schema: Any) -> str:
    with pytest.raises(InvalidSchema) as info:
        schema_to_grammar(schema)
    return info.value.message


def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


def test_a_refused_schema_is_a_400_on_response_format() -> None:
    with pytest.raises(InvalidRequest) as info:
        schema_to_grammar({"type": "strin"})
    assert info.value.status == 400
    assert info.value.param == "response_format"
    assert info.value.code == "invalid_schema"


@pytest.mark.parametrize("schema", [["type", "object"], "object", None, 3])
def test_a_schema_that_is_not_an_object_is_refused(schema: Any) -> None:
    assert "must be a JSON object" in refusal(schema)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "strin"},
        {"type": "string", "minLength": -1},
        {"properties": []},
        {"required": "name"},
        {"type": "string", "pattern": "(unclosed"},
    ],
)
def test_a_schema_that_breaks_the_json_schema_meta_schema_is_refused(schema: Any) -> None:
    assert "not a valid JSON Schema" in refusal(schema)


@pytest.mark.parametrize(
    "ref", ["#/$defs/missing", "#/definitions/missing", "https://example.com/s.json", "#anchor"]
)
def test_an_unknown_ref_is_refused(ref: str) -> None:
    assert ref in refusal({"$defs": {"x": {"type": "string"}}, "$ref": ref})


@pytest.mark.parametrize(
    "schema",
    [
        {
            "$defs": {
                "a": {
                    "type": "object",
                    "properties": {"x": {"$ref": "#/$defs/a"}},
                    "required": ["x"],
                }
            },
            "$ref": "#/$defs/a",
        },
        {"$ref": "#"},
        {"type": "object", "properties": {"self": {"$ref": "#"}}, "required": ["self"]},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        {"anyOf": [{"$ref": "#"}, {"type": "null"}]},
        {"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"},
        {
            "$defs": {"list": {"type": "array", "items": {"$ref": "#/$defs/list"}, "minItems": 1}},
            "$ref": "#/$defs/list",
        },
    ],
)
def test_a_schema_recursive_without_bound_is_refused(schema: dict[str, Any]) -> None:
    assert "recursive without bound" in refusal(schema)


def test_a_recursive_schema_that_can_stop_is_accepted() -> None:
    linked = {
        "$defs": {
            "item": {
                "type": "object",
                "properties": {"value": {"type": "integer"}, "next": {"$ref": "#/$defs/item"}},
                "required": ["value"],
            }
        },
        "$ref": "#/$defs/item",
    }
    assert "root ::=" in schema_to_grammar(TREE)
    assert "root ::=" in schema_to_grammar(linked)
    assert "root ::=" in schema_to_grammar({"anyOf": [{"type": "null"}, {"items": {"$ref": "#"}}]})


def test_a_schema_too_large_or_too_deep_is_refused() -> None:
    wide = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(1500)}}
    assert "too large" in refusal(wide)
    assert "deeper than" in refusal(nested(70))
    assert "root ::=" in schema_to_grammar(nested(10))


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        ({"not": {"type": "string"}}, "not"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems"),
        ({"type": "number", "multipleOf": 5}, "multipleOf"),
        ({"type": "object", "patternProperties": {"^x": {}}}, "patternProperties"),
        ({"type": "object", "minProperties": 1}, "minProperties"),
        ({"if": {"type": "string"}, "then": {"minLength": 2}}, "if"),
        ({"type": "array", "contains": {"type": "string"}}, "contains"),
        ({"type": "object", "properties": {"a": {"not": {}}}}, "not"),
    ],
)
def test_a_keyword_that_changes_validity_but_is_not_supported_is_named(
    schema: dict[str, Any], keyword: str
) -> None:
    message = refusal(schema)
    assert "unsupported" in message and keyword in message


@pytest.mark.parametrize(
    "pattern", ["^(?=a)b$", "^(a)\\1$", "^a\\bb$", "^a$|^b$", "[\\D]", "a{300}"]
)
def test_a_pattern_beyond_the_supported_regex_subset_is_refused(pattern: str) -> None:
    assert "pattern" in refusal({"type": "string", "pattern": pattern})


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "minLength": 5, "maxLength": 2},
        {"type": "integer", "minimum": 10, "maximum": 2},
        {"type": "string", "enum": [1, 2]},
        {"allOf": [{"type": "string"}, {"type": "integer"}]},
        {"type": "object", "required": ["x"], "properties": {}, "additionalProperties": False},
        {"type": "array", "prefixItems": [{}], "items": False, "minItems": 2},
        {"type": "string", "minLength": 5000},
    ],
)
def test_a_schema_no_value_can_satisfy_is_refused(schema: dict[str, Any]) -> None:
    refusal(schema)


def test_unknown_annotations_and_formats_do_not_block_a_schema() -> None:
    schema = {
        "title": "T",
        "description": "d",
        "type": "object",
        "properties": {"mail": {"type": "string", "format": "email", "x-extension": 1}},
        "examples": [{"mail": "a@b"}],
    }
    assert "root ::=" in schema_to_grammar(schema)


def test_json_object_grammar_starts_with_an_object() -> None:
    assert JSON_OBJECT_GRAMMAR.startswith("root ::= object\n")


def test_the_same_schema_gives_the_same_grammar() -> None:
    assert schema_to_grammar(TREE) == schema_to_grammar(TREE)


def test_validate_output_returns_the_value_or_says_what_is_wrong() -> None:
    schema = {
        "type": "object",
        "properties": {"day": {"type": "string", "format": "date"}, "n": {"type": "integer"}},
        "required": ["n"],
    }
    assert validate_output('{"n": 3, "day": "2024-02-29"}', schema) == {
        "n": 3,
        "day": "2024-02-29",
    }
    with pytest.raises(InvalidOutput, match="not valid JSON"):
        validate_output('{"n": 3', schema)
    with pytest.raises(InvalidOutput, match="'n' is a required property"):
        validate_output("{}", schema)
    with pytest.raises(InvalidOutput, match="date"):
        validate_output('{"n": 1, "day": "2023-02-29"}', schema)
    assert validate_output('{"a": [1]}', None) == {"a": [1]}
    with pytest.raises(InvalidOutput, match="not a JSON object"):
        validate_output("[1, 2]", None)


# ----- matching cost (issue 13) --------------------------------------------------------------

HOSTILE_ENUM = {"enum": [chr(0x4E00 + i) for i in range(1990)]}  # no two start alike
RECURSIVE_TWINS = {
    "$defs": {
        "x": {
            "anyOf": [
                {"type": "array", "items": {"$ref": "#/$defs/x"}},
                {"type": "array", "items": {"$ref": "#/$defs/x"}, "maxItems": 3},
            ]
        }
    },
    "$ref": "#/$defs/x",
}


def union(n: int) -> dict[str, Any]:
    """A discriminated union of `n` object types, as tools or pydantic unions give."""
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": {"kind": {"const": f"kind{k}"}, "x": {"type": "integer"}},
                "required": ["kind", "x"],
            }
            for k in range(n)
        ]
    }


@pytest.mark.parametrize(
    ("pattern", "limit"),
    [
        ("^(a?){256}a{256}$", "must not match the empty text"),
        ("^(a?){128}a{128}$", "must not match the empty text"),
        ("^(a|b?)*c$", "must not match the empty text"),
        ("^((a?){4}){64}$", "must not match the empty text"),
        ("^a{0,256}a{256}$", "MAX_STACKS"),
        ("^(a{1,16}){16}$", "MAX_STACKS"),
        ("^([a-z]{256}){8}$", "MAX_PATTERN_POSITIONS"),
    ],
)
def test_a_pattern_costly_to_match_is_refused_naming_the_limit(pattern: str, limit: str) -> None:
    message = refusal({"type": "string", "pattern": pattern})
    assert limit in message


@pytest.mark.parametrize(
    "schema",
    [
        HOSTILE_ENUM,
        {"anyOf": [{"type": "integer", "minimum": i} for i in range(100)]},
        union(100),
        RECURSIVE_TWINS,
        {
            "type": "string",
            "anyOf": [{"pattern": "^a{0,40}a{40}$"}, {"pattern": "^a{0,40}a{40}b$"}],
        },
    ],
)
def test_alternatives_open_at_once_beyond_the_limit_are_refused(schema: dict[str, Any]) -> None:
    assert "MAX_STACKS" in refusal(schema)


@pytest.mark.parametrize(
    "schema",
    [
        {"enum": [f"value-{i}" for i in range(1990)]},
        {"enum": [f"{w}{i}" for i in range(300) for w in ("alpha", "beta")]},
        union(40),
        {"type": "object", "properties": {f"field_{i}": {"type": "string"} for i in range(50)}},
        {"type": "string", "pattern": "^[a-z0-9._%+-]{1,64}@[a-z0-9.-]{1,255}\\.[a-z]{2,24}$"},
        {"type": "string", "pattern": "^a{0,30}a{30}$"},
        {"type": "array", "items": {"type": "string", "pattern": "^(ab|cd)*(a|c){0,8}$"}},
        {"anyOf": [{"const": "same"}, {"const": "sample"}, {"const": 1}, {"const": None}]},
    ],
)
def test_large_but_cheap_schemas_are_accepted(schema: dict[str, Any]) -> None:
    assert "root ::=" in schema_to_grammar(schema)


def test_a_union_is_written_with_its_common_start_once() -> None:
    grammar = schema_to_grammar(union(3))
    root = grammar.splitlines()[0]
    assert root.count('"{"') == 1 and root.count('"\\"kind\\":"') == 1
    assert all(f"kind{k}" in root for k in range(3))


def test_an_enum_is_written_as_a_tree_of_shared_prefixes() -> None:
    grammar = schema_to_grammar({"enum": ["apple", "apricot", "banana"]})
    assert grammar == 'root ::= "\\"" ("ap" ("ple\\"" | "ricot\\"") | "banana\\"")\n'


def test_checking_patterns_has_a_budget_per_schema() -> None:
    email = "^[a-z0-9._%+-]{1,64}@[a-z0-9.-]{1,255}\\.[a-z]{2,TOP}$"
    same = {f"p{i}": {"type": "string", "pattern": email.replace("TOP", "24")} for i in range(60)}
    assert "root ::=" in schema_to_grammar({"type": "object", "properties": same})
    distinct = {
        f"p{i}": {"type": "string", "pattern": email.replace("TOP", str(30 + i))} for i in range(60)
    }
    message = refusal({"type": "object", "properties": distinct})
    assert "MAX_SCHEMA_PATTERN_STATES" in message


def test_a_schema_sent_again_gets_the_same_answer() -> None:
    first = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}
    swapped = {"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "integer"}}}
    assert schema_to_grammar(first) == schema_to_grammar(dict(first))
    assert schema_to_grammar(swapped) != schema_to_grammar(first)  # members keep their order
    hostile = {"type": "string", "pattern": "^(a?){256}a{256}$"}
    assert refusal(hostile) == refusal(dict(hostile))
