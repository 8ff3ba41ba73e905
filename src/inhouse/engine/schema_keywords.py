"""JSON Schema keywords as the grammar compiler reads them: size limits, types, allOf merging."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

from inhouse.engine.gbnf import MAX_REPEAT
from inhouse.errors import InvalidSchema

MAX_NODES = 2000  # JSON values in a schema
MAX_DEPTH = 64  # JSON nesting of a schema
MAX_GRAMMAR_CHARS = 256_000

# split word lists keep these readable
ANNOTATIONS = frozenset(
    "$schema $id $anchor $comment $defs definitions title description default examples "  # noqa: SIM905
    "deprecated readOnly writeOnly contentMediaType contentEncoding".split()
)
UNSUPPORTED = (
    "not if then else contains minContains maxContains multipleOf minProperties maxProperties "  # noqa: SIM905
    "patternProperties propertyNames dependentRequired dependentSchemas dependencies "
    "unevaluatedProperties unevaluatedItems $dynamicRef $dynamicAnchor $recursiveRef".split()
)
IMPLIED_TYPE = {
    "object": {"properties", "additionalProperties", "required"},
    "array": {"items", "prefixItems", "minItems", "maxItems"},
    "string": {"minLength", "maxLength", "format", "pattern"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
}
FORMATS = ("date", "time", "date-time", "uuid")


def as_dict(schema: Any) -> dict[str, Any]:
    """A subschema as a dict (`true` is `{}`); `false` accepts nothing and is refused."""
    if schema is True:
        return {}
    if schema is False:
        raise InvalidSchema("a `false` subschema accepts no value, so nothing can be generated")
    if not isinstance(schema, dict):
        raise InvalidSchema("every subschema must be an object or a boolean")
    return schema


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def schema_types(schema: dict[str, Any]) -> list[str]:
    """Declared types, else the ones its keywords imply; [] means any JSON value."""
    declared = schema.get("type")
    if declared is None:
        return [t for t, keys in IMPLIED_TYPE.items() if keys & schema.keys()]
    types = [declared] if isinstance(declared, str) else list(declared)
    return [t for t in types if not (t == "integer" and "number" in types)]


def has_type(value: Any, declared: str | list[str]) -> bool:
    types = [declared] if isinstance(declared, str) else declared
    return any(Draft202012Validator.TYPE_CHECKER.is_type(value, t) for t in types)


def repeat_bounds(schema: dict[str, Any], low: str, high: str) -> tuple[int, int | None]:
    """(min, max) repetitions; a large max is lowered to MAX_REPEAT, a large min refused."""
    lo, hi = int(schema.get(low, 0)), schema.get(high)
    if lo > MAX_REPEAT:
        raise InvalidSchema(f"{low} {lo} is above the supported {MAX_REPEAT}")
    if hi is not None and hi < lo:
        raise InvalidSchema(f"{low} {lo} is above {high} {hi}: no value is valid")
    return lo, None if hi is None else min(int(hi), MAX_REPEAT)


def merge_schemas(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """One schema requiring both `a` and `b` (for allOf); conflicting keywords are refused."""
    out = dict(a)
    for key, value in b.items():
        if key not in out or key in ANNOTATIONS or out[key] == value:
            out.setdefault(key, value)
        else:
            out[key] = _merge_keyword(key, out[key], value)
    return out


def _merge_keyword(key: str, a: Any, b: Any) -> Any:
    if key == "properties":
        return {
            k: {"allOf": [a[k], b[k]]} if k in a and k in b else a.get(k, b.get(k))
            for k in {**a, **b}
        }
    if key == "required":
        return list(dict.fromkeys([*a, *b]))
    if key in ("minimum", "exclusiveMinimum", "minLength", "minItems"):
        return max(a, b)
    if key in ("maximum", "exclusiveMaximum", "maxLength", "maxItems"):
        return min(a, b)
    if key == "enum":
        return [v for v in a if v in b]
    if key == "additionalProperties" and False in (a, b):
        return False
    if key == "type":
        ta, tb = schema_types({"type": a}), schema_types({"type": b})
        both = [t for t in ta if t in tb or (t == "integer" and "number" in tb)]
        both += [t for t in tb if t == "integer" and "number" in ta and t not in both]
        if both:
            return both
    raise InvalidSchema(f"allOf: the parts disagree on '{key}'")


def check_size(schema: dict[str, Any]) -> None:
    """Refuse schemas with more than MAX_NODES JSON values or nested deeper than MAX_DEPTH."""
    nodes, stack = 0, [(schema, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise InvalidSchema(f"the schema is too large: more than {MAX_NODES} JSON values")
        if depth > MAX_DEPTH:
            raise InvalidSchema(f"the schema nests deeper than {MAX_DEPTH} levels")
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        stack.extend((child, depth + 1) for child in children)
