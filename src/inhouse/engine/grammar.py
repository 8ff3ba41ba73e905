"""JSON Schema -> llama.cpp GBNF grammar for structured output (OpenAI `response_format`).

Every text the grammar accepts parses as JSON and validates against the schema, except for
what this grammar does not see: bounds of non-integer numbers (exact for whole-number ranges
[m, n] with m >= 0, else only the sign), `oneOf` exclusivity, and a key repeated through
`additionalProperties`.
Serving checks those after generation with `validate_output`. Semantics are OpenAI's strict
mode: with `properties` and no `additionalProperties`, no other key is generated; properties
come in declared order. Whitespace and number digits are bounded, so a small model cannot
loop forever outside a string or an array without `maxItems`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import unquote

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, best_match

from inhouse.errors import InvalidSchema

MAX_NODES = 2000  # JSON values in a schema
MAX_DEPTH = 64  # JSON nesting of a schema
MAX_REPEAT = 256  # a larger maxLength / maxItems is lowered to this (stricter, still valid)
MAX_INT_BOUND = 10**15  # integer bounds beyond this are treated as absent
MAX_GRAMMAR_CHARS = 256_000

# split word lists keep these readable
_ANNOTATIONS = frozenset(
    "$schema $id $anchor $comment $defs definitions title description default examples "  # noqa: SIM905
    "deprecated readOnly writeOnly contentMediaType contentEncoding".split()
)
_UNSUPPORTED = (
    "not if then else contains minContains maxContains multipleOf minProperties maxProperties "  # noqa: SIM905
    "patternProperties propertyNames dependentRequired dependentSchemas dependencies "
    "unevaluatedProperties unevaluatedItems $dynamicRef $dynamicAnchor $recursiveRef".split()
)
_IMPLIED_TYPE = {
    "object": {"properties", "additionalProperties", "required"},
    "array": {"items", "prefixItems", "minItems", "maxItems"},
    "string": {"minLength", "maxLength", "format", "pattern"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
}
_FORMATS = ("date", "time", "date-time", "uuid")

# Shared rules: name -> (GBNF, the shared rules it uses).
_DAY31 = '"0" [1-9] | [12] [0-9] | "3" [01]'
_PRIMITIVES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ws": (r'([ ] | "\n" [ ]{0,16})?', ()),
    "char": (r'[^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})', ()),
    "string": (r'"\"" char* "\""', ("char",)),
    "boolean": ('"true" | "false"', ()),
    "null": ('"null"', ()),
    "natural": ('"0" | [1-9] [0-9]{0,15}', ()),
    "integer": ('"-"? natural', ("natural",)),
    "unsigned": ('natural ("." [0-9]{1,15})? ([eE] [-+]? [0-9]{1,2})?', ("natural",)),
    "number": ('"-"? unsigned', ("unsigned",)),
    "value": (
        "object | array | string | number | boolean | null",
        ("object", "array", "string", "number", "boolean", "null"),
    ),
    "member": ('string ":" ws value', ("string", "ws", "value")),
    "object": ('"{" ws (member ("," ws member)* ws)? "}"', ("ws", "member")),
    "array": ('"[" ws (value ("," ws value)* ws)? "]"', ("ws", "value")),
    "date": (
        f'[0-9]{{4}} "-" (("0" [13578] | "1" [02]) "-" ({_DAY31})'
        ' | ("0" [469] | "11") "-" ("0" [1-9] | [12] [0-9] | "30")'
        ' | "02-" ("0" [1-9] | "1" [0-9] | "2" [0-8]))',
        (),
    ),
    "hour": ('[01] [0-9] | "2" [0-3]', ()),
    "time": (
        'hour ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? ("Z" | [-+] hour ":" [0-5] [0-9])',
        ("hour",),
    ),
    "date-time": ('date "T" time', ("date", "time")),
    "uuid": (
        '[0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" '
        "[0-9a-fA-F]{12}",
        (),
    ),
}


class InvalidOutput(ValueError):
    """Generated text that does not parse as JSON or does not validate against the schema."""


# ----- grammar expressions ------------------------------------------------------------------


@dataclass(frozen=True)
class _Lit:
    text: str


@dataclass(frozen=True)
class _Chars:
    gbnf: str  # a character class written in GBNF, e.g. "[0-9]"


@dataclass(frozen=True)
class _Ref:
    name: str


@dataclass(frozen=True)
class _Seq:
    parts: tuple[_Expr, ...]


@dataclass(frozen=True)
class _Alt:
    options: tuple[_Expr, ...]


@dataclass(frozen=True)
class _Rep:
    expr: _Expr
    lo: int
    hi: int | None


_Expr = _Lit | _Chars | _Ref | _Seq | _Alt | _Rep
_EMPTY = _Seq(())
_DIGIT = _Chars("[0-9]")


def _seq(*parts: _Expr) -> _Expr:
    """A sequence without empty parts; a single part stands for itself."""
    kept = tuple(p for p in parts if p != _EMPTY)
    return kept[0] if len(kept) == 1 else _Seq(kept)


def _alt(*options: _Expr) -> _Expr:
    """Alternatives without duplicates; a single option stands for itself."""
    kept = tuple(dict.fromkeys(options))
    return kept[0] if len(kept) == 1 else _Alt(kept)


def _opt(expr: _Expr) -> _Expr:
    return _EMPTY if expr == _EMPTY else _Rep(expr, 0, 1)


def _quote(text: str) -> str:
    """`text` as a GBNF string literal."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _render(expr: _Expr) -> str:
    """GBNF text of `expr`, usable as the right-hand side of a rule."""
    if isinstance(expr, _Alt):
        return " | ".join(_render(o) for o in expr.options)
    if isinstance(expr, _Seq):
        return " ".join(_atom(p) if isinstance(p, _Alt) else _render(p) for p in expr.parts) or '""'
    if isinstance(expr, _Rep):
        hi = "" if expr.hi is None else str(expr.hi)
        suffix = {(0, "1"): "?", (0, ""): "*", (1, ""): "+"}.get((expr.lo, hi))
        if expr.lo == expr.hi:
            suffix = f"{{{hi}}}"
        return _atom(expr.expr) + (suffix or f"{{{expr.lo},{hi}}}")
    if isinstance(expr, _Lit):
        return _quote(expr.text)
    return expr.gbnf if isinstance(expr, _Chars) else expr.name


def _atom(expr: _Expr) -> str:
    text = _render(expr)
    return text if isinstance(expr, _Lit | _Chars | _Ref) else f"({text})"


def _render_grammar(rules: dict[str, _Expr], shared: set[str]) -> str:
    """The grammar text: `root` first, then the other rules, then the shared rules they use."""
    needed: list[str] = []
    todo = sorted(shared)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.append(name)
            todo.extend(_PRIMITIVES[name][1])
    lines = [f"root ::= {_render(rules['root'])}"]
    lines += [f"{name} ::= {_render(body)}" for name, body in rules.items() if name != "root"]
    lines += [f"{name} ::= {_PRIMITIVES[name][0]}" for name in sorted(needed)]
    return "\n".join(lines) + "\n"


JSON_OBJECT_GRAMMAR: str = _render_grammar({"root": _Ref("object")}, {"object"})


# ----- termination ---------------------------------------------------------------------------


def _derives(expr: _Expr, known: set[str], leaf: Callable[[_Lit | _Chars], bool]) -> bool:
    """Whether `expr` derives a text passing `leaf`, given the rules `known` to do so."""
    if isinstance(expr, _Ref):
        return expr.name in known
    if isinstance(expr, _Seq):
        return all(_derives(p, known, leaf) for p in expr.parts)
    if isinstance(expr, _Alt):
        return any(_derives(o, known, leaf) for o in expr.options)
    if isinstance(expr, _Rep):
        return expr.lo == 0 or _derives(expr.expr, known, leaf)
    return leaf(expr)


def _fixpoint(
    rules: dict[str, _Expr], start: set[str], leaf: Callable[[_Lit | _Chars], bool]
) -> set[str]:
    """The rules that derive a text passing `leaf` (least fixed point)."""
    known = set(start)
    changed = True
    while changed:
        new = {n for n, body in rules.items() if n not in known and _derives(body, known, leaf)}
        known |= new
        changed = bool(new)
    return known


def _left_refs(expr: _Expr, empty: set[str]) -> set[str]:
    """Rules that `expr` can enter before consuming any character."""
    if isinstance(expr, _Ref):
        return {expr.name}
    if isinstance(expr, _Alt):
        return set().union(*(_left_refs(o, empty) for o in expr.options))
    if isinstance(expr, _Rep):
        return _left_refs(expr.expr, empty) if expr.hi != 0 else set()
    found: set[str] = set()
    for part in expr.parts if isinstance(expr, _Seq) else ():
        found |= _left_refs(part, empty)
        if not _derives(part, empty, lambda e: isinstance(e, _Lit) and not e.text):
            break
    return found


def _has_cycle(graph: dict[str, set[str]]) -> bool:
    """Whether the directed graph has a cycle (Kahn's algorithm)."""
    pending = {n: len(edges) for n, edges in graph.items()}
    users: dict[str, list[str]] = {n: [] for n in graph}
    for n, edges in graph.items():
        for m in edges:
            users[m].append(n)
    ready = [n for n, count in pending.items() if count == 0]
    done = 0
    while ready:
        done += 1
        for user in users[ready.pop()]:
            pending[user] -= 1
            if pending[user] == 0:
                ready.append(user)
    return done < len(graph)


def _check_terminates(rules: dict[str, _Expr], refs: dict[str, str]) -> None:
    """Raise InvalidSchema unless every rule can finish and none re-enters itself at once."""
    finishing = _fixpoint(rules, set(_PRIMITIVES), lambda e: True)
    empty = _fixpoint(rules, {"ws"}, lambda e: isinstance(e, _Lit) and not e.text)
    graph = {n: _left_refs(body, empty) & rules.keys() for n, body in rules.items()}
    if finishing >= rules.keys() and not _has_cycle(graph):
        return
    where = [ptr for ptr, name in refs.items() if name not in finishing] or list(refs)
    raise InvalidSchema(
        f"the schema is recursive without bound (no finite value): {', '.join(where) or '#'}"
    )


# ----- schema -> rules -----------------------------------------------------------------------


def _as_dict(schema: Any) -> dict[str, Any]:
    """A subschema as a dict (`true` is `{}`); `false` accepts nothing and is refused."""
    if schema is True:
        return {}
    if schema is False:
        raise InvalidSchema("a `false` subschema accepts no value, so nothing can be generated")
    if not isinstance(schema, dict):
        raise InvalidSchema("every subschema must be an object or a boolean")
    return schema


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _types(schema: dict[str, Any]) -> list[str]:
    """Declared types, else the ones its keywords imply; [] means any JSON value."""
    declared = schema.get("type")
    if declared is None:
        return [t for t, keys in _IMPLIED_TYPE.items() if keys & schema.keys()]
    types = [declared] if isinstance(declared, str) else list(declared)
    return [t for t in types if not (t == "integer" and "number" in types)]


def _has_type(value: Any, declared: str | list[str]) -> bool:
    types = [declared] if isinstance(declared, str) else declared
    return any(Draft202012Validator.TYPE_CHECKER.is_type(value, t) for t in types)


def _repeat_bounds(schema: dict[str, Any], low: str, high: str) -> tuple[int, int | None]:
    """(min, max) repetitions; a large max is lowered to MAX_REPEAT, a large min refused."""
    lo, hi = int(schema.get(low, 0)), schema.get(high)
    if lo > MAX_REPEAT:
        raise InvalidSchema(f"{low} {lo} is above the supported {MAX_REPEAT}")
    if hi is not None and hi < lo:
        raise InvalidSchema(f"{low} {lo} is above {high} {hi}: no value is valid")
    return lo, None if hi is None else min(int(hi), MAX_REPEAT)


def _int_range(schema: dict[str, Any]) -> tuple[int | None, int | None]:
    """Inclusive integer bounds from minimum/maximum and their exclusive forms."""
    lows = [math.ceil(schema["minimum"])] if "minimum" in schema else []
    highs = [math.floor(schema["maximum"])] if "maximum" in schema else []
    if "exclusiveMinimum" in schema:
        lows.append(math.floor(schema["exclusiveMinimum"]) + 1)
    if "exclusiveMaximum" in schema:
        highs.append(math.ceil(schema["exclusiveMaximum"]) - 1)
    return max(lows, default=None), min(highs, default=None)


def _same_length(a: str, b: str) -> _Expr:
    """Decimal numerals from `a` to `b`, two numerals with the same number of digits."""
    rest = len(a) - 1
    if a == b:
        return _Lit(a)
    if a[1:] == "0" * rest and b[1:] == "9" * rest:
        tail = (_DIGIT if rest == 1 else _Rep(_DIGIT, rest, rest),) if rest else ()
        return _Seq((_Chars(f"[{a[0]}-{b[0]}]"), *tail))
    if a[0] == b[0]:
        return _Seq((_Lit(a[0]), _same_length(a[1:], b[1:])))
    low = _Seq((_Lit(a[0]), _same_length(a[1:], "9" * rest)))
    high = _Seq((_Lit(b[0]), _same_length("0" * rest, b[1:])))
    if int(b[0]) - int(a[0]) < 2:
        return _alt(low, high)
    middle = _same_length(f"{int(a[0]) + 1}" + "0" * rest, f"{int(b[0]) - 1}" + "9" * rest)
    return _alt(low, middle, high)


def _naturals(lo: int, hi: int | None) -> _Expr:
    """Numerals of the integers lo..hi (0 <= lo; hi None: any, up to 16 digits)."""
    if hi is None:
        n = len(str(lo))
        longer = (_Seq((_Chars("[1-9]"), _Rep(_DIGIT, n, 15))),) if n < 16 else ()
        return _alt(_same_length(str(lo), "9" * n), *longer)
    parts = []
    for n in range(len(str(lo)), len(str(hi)) + 1):
        first = max(lo, 10 ** (n - 1) if n > 1 else 0)
        parts.append(_same_length(str(first), str(min(hi, 10**n - 1))))
    return _alt(*parts)


def _integers(lo: int | None, hi: int | None) -> _Expr:
    """Numerals of exactly the integers in lo..hi (None: unbounded, within 16 digits)."""
    if (lo is not None and lo > MAX_INT_BOUND) or (hi is not None and hi < -MAX_INT_BOUND):
        raise InvalidSchema(f"integer bounds beyond {MAX_INT_BOUND} are not supported")
    lo = None if lo is not None and lo < -MAX_INT_BOUND else lo
    hi = None if hi is not None and hi > MAX_INT_BOUND else hi
    if lo is not None and hi is not None and lo > hi:
        raise InvalidSchema(f"no integer lies between {lo} and {hi}")
    parts = []
    if hi is None or hi >= 0:
        parts.append(_naturals(max(lo or 0, 0), hi))
    if lo is None or lo < 0:
        magnitudes = _naturals(max(1, -hi if hi is not None else 1), None if lo is None else -lo)
        parts.append(_Seq((_Lit("-"), magnitudes)))
    return _alt(*parts)


def _decimals(low: int, high: int) -> _Expr:
    """Numbers in [low, high] written without exponent, for integers 0 <= low <= high."""
    top = _seq(_Lit(str(high)), _opt(_Seq((_Lit("."), _Rep(_Lit("0"), 1, 15)))))
    if low == high:
        return top
    below = _seq(_naturals(low, high - 1), _opt(_Seq((_Lit("."), _Rep(_DIGIT, 1, 15)))))
    return _alt(below, top)


def _whole(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == int(value)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """One schema requiring both `a` and `b` (for allOf); conflicting keywords are refused."""
    out = dict(a)
    for key, value in b.items():
        if key not in out or key in _ANNOTATIONS or out[key] == value:
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
        ta, tb = _types({"type": a}), _types({"type": b})
        both = [t for t in ta if t in tb or (t == "integer" and "number" in tb)]
        both += [t for t in tb if t == "integer" and "number" in ta and t not in both]
        if both:
            return both
    raise InvalidSchema(f"allOf: the parts disagree on '{key}'")


class _Compiler:
    """Turns one checked schema into grammar rules, one rule per $ref target."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.rules: dict[str, _Expr] = {}
        self.shared: set[str] = set()
        self.named: dict[_Expr, str] = {}
        self.refs: dict[str, str] = {}  # $ref -> rule name
        self.merging: list[str] = []  # $refs being inlined into an allOf
        self.depth = 0

    def grammar(self) -> str:
        self.rules["root"] = self.schema(self.root)
        _check_terminates(self.rules, self.refs)
        text = _render_grammar(self.rules, self.shared)
        if len(text) > MAX_GRAMMAR_CHARS:
            raise InvalidSchema("the schema is too large: its grammar exceeds the supported size")
        return text

    # ----- rules

    def fresh(self, hint: str) -> str:
        base = "".join(c if c.isascii() and c.isalnum() else "-" for c in hint.lower()).strip("-")
        name, n = base or "r", 1
        while name in self.rules or name in _PRIMITIVES or name == "root":
            n += 1
            name = f"{base or 'r'}-{n}"
        return name

    def rule(self, hint: str, body: _Expr) -> _Expr:
        """A reference to a rule with `body` (one rule per distinct body)."""
        if isinstance(body, _Ref | _Lit | _Chars) or body == _EMPTY:
            return body
        if body not in self.named:
            self.named[body] = self.fresh(hint)
            self.rules[self.named[body]] = body
        return _Ref(self.named[body])

    def prim(self, name: str) -> _Ref:
        self.shared.add(name)
        return _Ref(name)

    def rep(self, expr: _Expr, lo: int, hi: int | None) -> _Expr:
        """`expr` lo..hi times; a compound `expr` gets a rule (llama.cpp caps nested fan-out)."""
        if hi == 0 or expr == _EMPTY:
            return _EMPTY
        if lo == hi == 1:
            return expr
        return _Rep(self.rule("item", expr), lo, hi)

    # ----- schemas

    def schema(self, schema: Any) -> _Expr:
        """The expression for the JSON texts valid against `schema`."""
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise InvalidSchema(f"the schema nests deeper than {MAX_DEPTH} levels")
            return self.keywords(_as_dict(schema))
        finally:
            self.depth -= 1

    def keywords(self, s: dict[str, Any]) -> _Expr:
        bad = [k for k in _UNSUPPORTED if k in s] + (
            ["uniqueItems"] if s.get("uniqueItems") else []
        )
        if bad:
            raise InvalidSchema(f"unsupported keyword(s) for structured output: {', '.join(bad)}")
        if "$ref" in s:
            return self.ref(s)
        if "allOf" in s:
            return self.schema(self.merge_all(s))
        for key in ("anyOf", "oneOf"):
            if key in s:
                return self.any_of(s, key)
        if "const" in s:
            return _Lit(_dump(s["const"]))
        if "enum" in s:
            return self.enum(s)
        types = _types(s)
        if not types:
            return self.prim("value")
        return _alt(*(self.typed(s, t) for t in types))

    def typed(self, s: dict[str, Any], t: str) -> _Expr:
        if t == "object":
            return self.object(s)
        if t == "array":
            return self.array(s)
        if t == "string":
            return self.string(s)
        if t in ("number", "integer"):
            return self.number(s, integer=t == "integer")
        return self.prim(t)

    def ref(self, s: dict[str, Any]) -> _Expr:
        pointer = s["$ref"]
        rest = {k: v for k, v in s.items() if k != "$ref" and k not in _ANNOTATIONS}
        if rest:
            return self.schema({"allOf": [{"$ref": pointer}, rest]})
        if pointer not in self.refs:
            target = self.resolve(pointer)
            name = self.fresh("ref-" + (pointer.rsplit("/", 1)[-1] if pointer != "#" else "root"))
            self.refs[pointer] = name
            self.rules[name] = _EMPTY  # reserves the name while the target refers back to it
            self.rules[name] = self.schema(target)
        return _Ref(self.refs[pointer])

    def resolve(self, pointer: str) -> Any:
        """The subschema a local `$ref` (`#`, `#/$defs/x`, any JSON pointer) points to."""
        fragment = unquote(pointer[1:]) if pointer.startswith("#") else None
        node: Any = self.root
        if fragment is None or (fragment and not fragment.startswith("/")):
            raise InvalidSchema(f"unknown $ref {pointer!r}: only local JSON pointers are supported")
        for part in fragment.split("/")[1:]:
            key = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise InvalidSchema(f"unknown $ref {pointer!r}")
        if not isinstance(node, dict | bool):
            raise InvalidSchema(f"$ref {pointer!r} does not point to a schema")
        return node

    def flat(self, schema: Any) -> dict[str, Any]:
        """`schema` with its top-level $ref and allOf merged in (for allOf)."""
        s = _as_dict(schema)
        if "$ref" in s:
            pointer = s["$ref"]
            if pointer in self.merging:
                raise InvalidSchema(f"the schema is recursive without bound: {pointer}")
            self.merging.append(pointer)
            try:
                target = self.flat(self.resolve(pointer))
            finally:
                self.merging.pop()
            s = _merge(target, {k: v for k, v in s.items() if k != "$ref"})
        return self.merge_all(s) if "allOf" in s else s

    def merge_all(self, s: dict[str, Any]) -> dict[str, Any]:
        merged = self.flat({k: v for k, v in s.items() if k != "allOf"})
        for part in s["allOf"]:
            merged = _merge(merged, self.flat(part))
        return merged

    def any_of(self, s: dict[str, Any], key: str) -> _Expr:
        base = {k: v for k, v in s.items() if k != key}
        shared = any(k not in _ANNOTATIONS for k in base)
        options = [self.schema({"allOf": [base, o]} if shared else o) for o in s[key]]
        return _alt(*options)

    def enum(self, s: dict[str, Any]) -> _Expr:
        values = [v for v in s["enum"] if "type" not in s or _has_type(v, s["type"])]
        if not values:
            raise InvalidSchema("no value of `enum` has the declared `type`")
        return _alt(*(_Lit(_dump(v)) for v in values))

    def string(self, s: dict[str, Any]) -> _Expr:
        quote = _Lit('"')
        if "pattern" in s:
            return _seq(quote, _Regex(s["pattern"], self).parse(), quote)
        if s.get("format") in _FORMATS:
            return _seq(quote, self.prim(s["format"]), quote)
        lo, hi = _repeat_bounds(s, "minLength", "maxLength")
        if lo == 0 and hi is None:
            return self.prim("string")
        return _seq(quote, self.rep(self.prim("char"), lo, hi), quote)

    def number(self, s: dict[str, Any], *, integer: bool) -> _Expr:
        """Integers exactly within their bounds; other numbers within [m, n] or by sign only."""
        if integer:
            bounds = _int_range(s)
            return self.prim("integer") if bounds == (None, None) else _integers(*bounds)
        low, high = s.get("minimum"), s.get("maximum")
        exclusive = "exclusiveMinimum" in s or "exclusiveMaximum" in s
        if _whole(low) and _whole(high) and 0 <= low <= high <= MAX_INT_BOUND and not exclusive:
            return _decimals(int(low), int(high))
        if max(s.get("minimum", -1), s.get("exclusiveMinimum", -1)) >= 0:
            return self.prim("unsigned")
        if s.get("maximum", 0) < 0 or s.get("exclusiveMaximum", 1) <= 0:
            return _seq(_Lit("-"), self.prim("unsigned"))
        return self.prim("number")

    def object(self, s: dict[str, Any]) -> _Expr:
        declared = s.get("properties", {})
        extra = s.get("additionalProperties", "properties" not in s)
        required = s.get("required", [])
        if not declared and not required and extra is True:
            return self.prim("object")
        props = {k: v for k, v in declared.items() if v is not False}
        for key in required:
            if key not in props and (key in declared or extra is False):
                raise InvalidSchema(f"required property {key!r} is not allowed by the schema")
            props.setdefault(key, extra)
        members = [(self.member(_dump(k), v), k in required) for k, v in props.items()]
        ws = self.prim("ws")
        other = None
        if extra is not False:
            other = self.rule("other", _seq(self.prim("string"), _Lit(":"), ws, self.schema(extra)))
        return self.rule("obj", _seq(_Lit("{"), ws, self.members(members, other), _Lit("}")))

    def member(self, key: str, schema: Any) -> _Expr:
        return _seq(_Lit(key + ":"), self.prim("ws"), self.schema(schema))

    def members(self, members: list[tuple[_Expr, bool]], other: _Expr | None) -> _Expr:
        """Comma-separated members in order, optional ones maybe, then any `other` members."""
        comma, ws = _seq(_Lit(","), self.prim("ws")), self.prim("ws")
        rest = _EMPTY if other is None else self.rep(_seq(comma, other), 0, None)
        lead = next((i for i, (_, required) in enumerate(members) if required), len(members))
        first = None if other is None or lead < len(members) else _seq(other, rest)
        for i in range(len(members) - 1, -1, -1):
            member, required = members[i]
            rest = self.rule("rest", rest)
            head = _seq(member, rest)
            if i < lead and first is not None:  # optional, and later members may come first
                first = _alt(head, self.rule("first", first))
            elif i <= lead:
                first = head
            rest = _seq(comma, member, rest) if required else _seq(_opt(_seq(comma, member)), rest)
        if first is None:
            return _EMPTY
        return _seq(first, ws) if lead < len(members) else _opt(_seq(first, ws))

    def array(self, s: dict[str, Any]) -> _Expr:
        lo, hi = _repeat_bounds(s, "minItems", "maxItems")
        prefix = [self.schema(p) for p in s.get("prefixItems", [])][:hi]
        items = s.get("items", True)
        if items is False and lo > len(prefix):
            raise InvalidSchema("minItems asks for more items than prefixItems allows")
        tail = None if items is False else self.schema(items)
        comma = _seq(_Lit(","), self.prim("ws"))
        more: _Expr = _EMPTY
        if tail is not None:
            k = len(prefix)
            more = self.rep(_seq(comma, tail), max(0, lo - k - (k == 0)), _minus(hi, k + (k == 0)))
        if prefix:
            for i in range(len(prefix) - 1, 0, -1):
                step = _seq(comma, prefix[i], more)
                more = step if i < lo else _opt(step)
            elements: _Expr = _seq(prefix[0], more)
        elif tail is not None and hi != 0:
            elements = _seq(tail, more)
        else:
            elements = _EMPTY
        ws = self.prim("ws")
        body = _EMPTY if elements == _EMPTY else _seq(elements, ws)
        return self.rule("arr", _seq(_Lit("["), ws, body if lo else _opt(body), _Lit("]")))


def _minus(hi: int | None, n: int) -> int | None:
    return None if hi is None else max(0, hi - n)


# ----- pattern: a regex subset ---------------------------------------------------------------

_Ranges = list[tuple[int, int]]
_NEEDS_ESCAPE: _Ranges = [(0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C)]  # inside a JSON string
_SHORTHANDS: dict[str, _Ranges] = {
    "d": [(0x30, 0x39)],
    "w": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "s": [(0x20, 0x20)],  # other whitespace would need JSON escapes
}
_QUANTIFIER = re.compile(r"\{(\d+)(?:(,)(\d*))?\}")


def _subtract(ranges: _Ranges, holes: _Ranges) -> _Ranges:
    for h1, h2 in holes:
        pieces = (((a, min(b, h1 - 1)), (max(a, h2 + 1), b)) for a, b in ranges)
        ranges = [p for pair in pieces for p in pair if p[0] <= p[1]]
    return ranges


def _class_char(cp: int) -> str:
    ch = chr(cp)
    if ch.isascii() and ch.isalnum():
        return ch
    return f"\\x{cp:02X}" if cp < 0x100 else f"\\u{cp:04X}" if cp < 0x10000 else f"\\U{cp:08X}"


def _char_set(negated: bool, ranges: _Ranges) -> _Expr:
    """Characters of a set as they appear inside a JSON string (escapes excluded, stricter)."""
    if not negated and len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return _Lit(json.dumps(chr(ranges[0][0]), ensure_ascii=False)[1:-1])
    kept = ranges + _NEEDS_ESCAPE if negated else _subtract(ranges, _NEEDS_ESCAPE)
    if not kept:
        raise InvalidSchema("pattern: a character class holds only characters JSON must escape")
    items = "".join(_class_char(a) + ("" if a == b else "-" + _class_char(b)) for a, b in kept)
    return _Chars(f"[{'^' if negated else ''}{items}]")


class _Regex:
    """A regex subset -> the JSON text of strings that fully match it (which `search` finds).

    Supported: literals, escapes, [classes], ., ASCII \\d \\w \\s, groups, |, ? * + {m,n};
    ^ and $ only at the ends.
    """

    def __init__(self, pattern: str, compiler: _Compiler) -> None:
        self.text, self.compiler = pattern, compiler
        self.pos = 1 if pattern.startswith("^") else 0
        backslashes = len(pattern[:-1]) - len(pattern[:-1].rstrip("\\"))
        anchored = pattern.endswith("$") and backslashes % 2 == 0
        self.end = len(pattern) - 1 if anchored else len(pattern)

    def fail(self, what: str) -> InvalidSchema:
        return InvalidSchema(
            f"pattern {self.text!r}: {what} is not supported; use literals, [classes], ., "
            "\\d \\w \\s, groups, | and quantifiers, with ^ and $ only at the ends"
        )

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < self.end else ""

    def parse(self) -> _Expr:
        expr = self.alternation()
        if self.pos != self.end:
            raise self.fail(f"{self.text[self.pos]!r} at position {self.pos}")
        return expr

    def alternation(self) -> _Expr:
        options = [self.sequence()]
        while self.peek() == "|":
            self.pos += 1
            options.append(self.sequence())
        return _alt(*options)

    def sequence(self) -> _Expr:
        parts = []
        while self.peek() not in ("", "|", ")"):
            parts.append(self.quantified(self.atom()))
        return _seq(*parts)

    def quantified(self, atom: _Expr) -> _Expr:
        ch, braces = self.peek(), _QUANTIFIER.match(self.text, self.pos, self.end)
        if ch and ch in "?*+":
            lo, hi = {"?": (0, 1), "*": (0, None), "+": (1, None)}[ch]
            self.pos += 1
        elif braces:
            lo = int(braces[1])
            hi = lo if not braces[2] else int(braces[3]) if braces[3] else None
            self.pos = braces.end()
        else:
            return atom
        self.pos += self.peek() == "?"  # a lazy quantifier matches the same strings
        if lo > MAX_REPEAT:
            raise self.fail(f"repeating more than {MAX_REPEAT} times")
        return self.compiler.rep(atom, lo, None if hi is None else min(hi, MAX_REPEAT))

    def atom(self) -> _Expr:
        ch = self.peek()
        self.pos += 1
        if ch == "(":
            if self.text.startswith("?:", self.pos):
                self.pos += 2
            elif self.peek() == "?":
                raise self.fail("a (?...) group")
            expr = self.alternation()
            if self.peek() != ")":
                raise self.fail("an unclosed group")
            self.pos += 1
            return expr
        if ch == "[":
            return self.char_class()
        if ch == ".":
            return _char_set(True, [])
        if ch == "\\":
            return _char_set(*self.escaped())
        if ch in "*+?{^$":
            raise self.fail(f"{ch!r} at position {self.pos - 1}")
        return _char_set(False, [(ord(ch), ord(ch))])

    def escaped(self) -> tuple[bool, _Ranges]:
        """The character set named by the escape after a backslash."""
        ch = self.peek()
        self.pos += 1
        if ch.lower() in _SHORTHANDS and ch:
            return ch.isupper(), _SHORTHANDS[ch.lower()]
        hex4 = self.text[self.pos : self.pos + 4]
        if ch == "u" and re.fullmatch("[0-9a-fA-F]{4}", hex4):
            self.pos += 4
            return False, [(int(hex4, 16), int(hex4, 16))]
        if ch and ch in "ntrfv":
            cp = ord({"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v"}[ch])
            return False, [(cp, cp)]
        if ch and not ch.isalnum():
            return False, [(ord(ch), ord(ch))]
        raise self.fail(f"the escape \\{ch}")

    def char_class(self) -> _Expr:
        negated = self.peek() == "^"
        self.pos += negated
        ranges: _Ranges = []
        while self.peek() != "]" or not ranges:
            if not self.peek():
                raise self.fail("an unclosed [")
            low = self.class_atom()
            at_range = self.peek() == "-" and self.text[self.pos + 1 : self.pos + 2] not in (
                "]",
                "",
            )
            if at_range and len(low) == 1 and low[0][0] == low[0][1]:
                self.pos += 1
                high = self.class_atom()
                low = [(low[0][0], high[-1][1])]
            ranges += low
        self.pos += 1
        return _char_set(negated, ranges)

    def class_atom(self) -> _Ranges:
        ch = self.peek()
        self.pos += 1
        if ch != "\\":
            return [(ord(ch), ord(ch))]
        negated, ranges = self.escaped()
        if negated:
            raise self.fail("a negated shorthand (\\D \\W \\S) inside a class")
        return ranges


# ----- public API ----------------------------------------------------------------------------


def _check_size(schema: dict[str, Any]) -> None:
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


def schema_to_grammar(schema: dict[str, Any]) -> str:
    """GBNF (start rule `root`) for JSON valid against `schema`; InvalidSchema if impossible."""
    if not isinstance(schema, dict):
        raise InvalidSchema("the JSON schema must be a JSON object")
    _check_size(schema)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidSchema(f"not a valid JSON Schema (draft 2020-12): {exc.message}") from None
    return _Compiler(schema).grammar()


def validate_output(text: str, schema: dict[str, Any] | None) -> Any:
    """The JSON value of `text`; InvalidOutput unless it validates (schema None: an object)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidOutput(f"the output is not valid JSON: {exc}") from None
    if schema is None:
        if not isinstance(value, dict):
            raise InvalidOutput("the output is not a JSON object")
        return value
    checker = FormatChecker(formats=())
    known = Draft202012Validator.FORMAT_CHECKER.checkers
    checker.checkers = {f: known[f] for f in _FORMATS if f in known}
    error = best_match(Draft202012Validator(schema, format_checker=checker).iter_errors(value))
    if error is not None:
        raise InvalidOutput(f"the output does not match the schema: {error.message}")
    return value
