"""JSON Schema -> llama.cpp GBNF grammar for structured output (OpenAI `response_format`).

Every text the grammar accepts parses as JSON and validates against the schema, except for
what this grammar does not see: bounds of non-integer numbers (exact for whole-number ranges
[m, n] with m >= 0, else only the sign), `oneOf` exclusivity, and a key repeated through
`additionalProperties`.
`validate_output` checks those after generation. Semantics are OpenAI's strict
mode: with `properties` and no `additionalProperties`, no other key is generated; properties
come in declared order. Whitespace and number digits are bounded, so a small model cannot
loop forever outside a string or an array without `maxItems`. Enums and unions are written
with their common starts once; schemas too costly for llama.cpp to follow are refused
(grammar_cost.py).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, best_match

from inhouse.engine.gbnf import (
    EMPTY,
    PRIMITIVES,
    Chars,
    Expr,
    Lit,
    Ref,
    Rep,
    alt,
    check_terminates,
    factor,
    flatten,
    literals,
    nullable,
    opt,
    reachable,
    render_grammar,
    seq,
)
from inhouse.engine.grammar_cost import PatternCosts, check_stacks
from inhouse.engine.grammar_numbers import MAX_INT_BOUND, decimals, int_range, integers, whole
from inhouse.engine.grammar_regex import Regex
from inhouse.engine.schema_keywords import (
    ANNOTATIONS,
    FORMATS,
    MAX_DEPTH,
    MAX_GRAMMAR_CHARS,
    UNSUPPORTED,
    as_dict,
    check_size,
    dump_json,
    has_type,
    merge_schemas,
    repeat_bounds,
    schema_types,
)
from inhouse.errors import InvalidSchema

JSON_OBJECT_GRAMMAR: str = render_grammar({"root": Ref("object")}, {"object"})
"""Any JSON object."""


class InvalidOutput(ValueError):
    """Generated text that does not parse as JSON or does not validate against the schema."""


# ----- schema -> rules -----------------------------------------------------------------------
class _Compiler:
    """Turns one checked schema into grammar rules, one rule per $ref target."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.rules: dict[str, Expr] = {}
        self.shared: set[str] = set()
        self.named: dict[Expr, str] = {}
        self.refs: dict[str, str] = {}  # $ref -> rule name
        self.merging: list[str] = []  # $refs being inlined into an allOf
        self.depth = 0
        self.fixed: dict[int, tuple[Expr, int]] = {}  # patterns: id -> (body, parse stacks)
        self.pending: set[str] = set()  # $ref rules whose body is being compiled
        self.patterns = PatternCosts()

    def grammar(self) -> str:
        self.rules["root"] = self.schema(self.root)
        rules = reachable(self.rules)
        check_terminates(rules, {ptr: name for ptr, name in self.refs.items() if name in rules})
        text = render_grammar(rules, self.shared)
        if len(text) > MAX_GRAMMAR_CHARS:
            raise InvalidSchema("the schema is too large: its grammar exceeds the supported size")
        check_stacks(rules, self.fixed)
        return text

    # ----- rules

    def fresh(self, hint: str) -> str:
        base = "".join(c if c.isascii() and c.isalnum() else "-" for c in hint.lower()).strip("-")
        name, n = base or "r", 1
        while name in self.rules or name in PRIMITIVES or name == "root":
            n += 1
            name = f"{base or 'r'}-{n}"
        return name

    def rule(self, hint: str, body: Expr) -> Expr:
        """A reference to a rule with `body` (one rule per distinct body)."""
        if isinstance(body, Ref | Lit | Chars) or body == EMPTY:
            return body
        if body not in self.named:
            self.named[body] = self.fresh(hint)
            self.rules[self.named[body]] = body
        return Ref(self.named[body])

    def matches_empty(self, expr: Expr) -> bool:
        return nullable(expr, self.rules)

    def prim(self, name: str) -> Ref:
        self.shared.add(name)
        return Ref(name)

    def rep(self, expr: Expr, lo: int, hi: int | None) -> Expr:
        """`expr` lo..hi times; a compound `expr` gets a rule (llama.cpp caps nested fan-out)."""
        if hi == 0 or expr == EMPTY:
            return EMPTY
        if lo == hi == 1:
            return expr
        return Rep(self.rule("item", expr), lo, hi)

    # ----- schemas

    def schema(self, schema: Any) -> Expr:
        """The expression for the JSON texts valid against `schema`."""
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise InvalidSchema(f"the schema nests deeper than {MAX_DEPTH} levels")
            return self.keywords(as_dict(schema))
        finally:
            self.depth -= 1

    def keywords(self, s: dict[str, Any]) -> Expr:
        bad = [k for k in UNSUPPORTED if k in s] + (["uniqueItems"] if s.get("uniqueItems") else [])
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
            return Lit(dump_json(s["const"]))
        if "enum" in s:
            return self.enum(s)
        types = schema_types(s)
        if not types:
            return self.prim("value")
        return alt(*(self.typed(s, t) for t in types))

    def typed(self, s: dict[str, Any], t: str) -> Expr:
        if t == "object":
            return self.object(s)
        if t == "array":
            return self.array(s)
        if t == "string":
            return self.string(s)
        if t in ("number", "integer"):
            return self.number(s, integer=t == "integer")
        return self.prim(t)

    def ref(self, s: dict[str, Any]) -> Expr:
        pointer = s["$ref"]
        rest = {k: v for k, v in s.items() if k != "$ref" and k not in ANNOTATIONS}
        if rest:
            return self.schema({"allOf": [{"$ref": pointer}, rest]})
        if pointer not in self.refs:
            target = self.resolve(pointer)
            name = self.fresh("ref-" + (pointer.rsplit("/", 1)[-1] if pointer != "#" else "root"))
            self.refs[pointer] = name
            self.rules[name] = EMPTY  # reserves the name while the target refers back to it
            self.pending.add(name)
            self.rules[name] = self.schema(target)
            self.pending.discard(name)
        return Ref(self.refs[pointer])

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
        s = as_dict(schema)
        if "$ref" in s:
            pointer = s["$ref"]
            if pointer in self.merging:
                raise InvalidSchema(f"the schema is recursive without bound: {pointer}")
            self.merging.append(pointer)
            try:
                target = self.flat(self.resolve(pointer))
            finally:
                self.merging.pop()
            s = merge_schemas(target, {k: v for k, v in s.items() if k != "$ref"})
        return self.merge_all(s) if "allOf" in s else s

    def merge_all(self, s: dict[str, Any]) -> dict[str, Any]:
        merged = self.flat({k: v for k, v in s.items() if k != "allOf"})
        for part in s["allOf"]:
            merged = merge_schemas(merged, self.flat(part))
        return merged

    def any_of(self, s: dict[str, Any], key: str) -> Expr:
        base = {k: v for k, v in s.items() if k != key}
        shared = any(k not in ANNOTATIONS for k in base)
        options = [self.schema({"allOf": [base, o]} if shared else o) for o in s[key]]
        if all(isinstance(o, Lit) for o in options):  # consts: one trie, like an enum
            return literals([o.text for o in options if isinstance(o, Lit)])
        return self.factored(options)

    def factored(self, options: list[Expr]) -> Expr:
        """The alternatives with the parts they start with written once: objects of a union
        then share one parse stack up to where they differ, instead of one each."""
        flat = [self.parts(o) for o in options]
        if len({parts[:1] for parts in flat}) == len(flat):
            return alt(*options)  # nothing shared: keep the rules as they are
        return factor(flat)

    def parts(self, expr: Expr) -> tuple[Expr, ...]:
        """`expr` as a flat sequence, looking through the rules it is (not recursive ones)."""
        seen: set[str] = set()
        while isinstance(expr, Ref) and expr.name in self.rules and expr.name not in seen:
            if expr.name in self.pending:
                break
            seen.add(expr.name)
            expr = self.rules[expr.name]
        return flatten(expr, self.fixed)  # a pattern stays whole: its cost is measured

    def enum(self, s: dict[str, Any]) -> Expr:
        values = [v for v in s["enum"] if "type" not in s or has_type(v, s["type"])]
        if not values:
            raise InvalidSchema("no value of `enum` has the declared `type`")
        return literals([dump_json(v) for v in values])

    def string(self, s: dict[str, Any]) -> Expr:
        quote = Lit('"')
        if "pattern" in s:
            body = Regex(s["pattern"], self).parse()
            self.fixed[id(body)] = (body, self.patterns.stacks(s["pattern"], body, self.rules))
            return seq(quote, body, quote)
        if s.get("format") in FORMATS:
            return seq(quote, self.prim(s["format"]), quote)
        lo, hi = repeat_bounds(s, "minLength", "maxLength")
        if lo == 0 and hi is None:
            return self.prim("string")
        return seq(quote, self.rep(self.prim("char"), lo, hi), quote)

    def number(self, s: dict[str, Any], *, integer: bool) -> Expr:
        """Integers exactly within their bounds; other numbers within [m, n] or by sign only."""
        if integer:
            bounds = int_range(s)
            return self.prim("integer") if bounds == (None, None) else integers(*bounds)
        low, high = s.get("minimum"), s.get("maximum")
        exclusive = "exclusiveMinimum" in s or "exclusiveMaximum" in s
        if whole(low) and whole(high) and 0 <= low <= high <= MAX_INT_BOUND and not exclusive:
            return decimals(int(low), int(high))
        if max(s.get("minimum", -1), s.get("exclusiveMinimum", -1)) >= 0:
            return self.prim("unsigned")
        if s.get("maximum", 0) < 0 or s.get("exclusiveMaximum", 1) <= 0:
            return seq(Lit("-"), self.prim("unsigned"))
        return self.prim("number")

    def object(self, s: dict[str, Any]) -> Expr:
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
        members = [(self.member(dump_json(k), v), k in required) for k, v in props.items()]
        ws = self.prim("ws")
        other = None
        if extra is not False:
            other = self.rule("other", seq(self.prim("string"), Lit(":"), ws, self.schema(extra)))
        return self.rule("obj", seq(Lit("{"), ws, self.members(members, other), Lit("}")))

    def member(self, key: str, schema: Any) -> Expr:
        return seq(Lit(key + ":"), self.prim("ws"), self.schema(schema))

    def members(self, members: list[tuple[Expr, bool]], other: Expr | None) -> Expr:
        """Comma-separated members in order, optional ones maybe, then any `other` members."""
        comma, ws = seq(Lit(","), self.prim("ws")), self.prim("ws")
        rest = EMPTY if other is None else self.rep(seq(comma, other), 0, None)
        lead = next((i for i, (_, required) in enumerate(members) if required), len(members))
        first = None if other is None or lead < len(members) else seq(other, rest)
        for i in range(len(members) - 1, -1, -1):
            member, required = members[i]
            rest = self.rule("rest", rest)
            head = seq(member, rest)
            if i < lead and first is not None:  # optional, and later members may come first
                first = alt(head, self.rule("first", first))
            elif i <= lead:
                first = head
            rest = seq(comma, member, rest) if required else seq(opt(seq(comma, member)), rest)
        if first is None:
            return EMPTY
        return seq(first, ws) if lead < len(members) else opt(seq(first, ws))

    def array(self, s: dict[str, Any]) -> Expr:
        lo, hi = repeat_bounds(s, "minItems", "maxItems")
        prefix = [self.schema(p) for p in s.get("prefixItems", [])][:hi]
        items = s.get("items", True)
        if items is False and lo > len(prefix):
            raise InvalidSchema("minItems asks for more items than prefixItems allows")
        tail = None if items is False else self.schema(items)
        comma = seq(Lit(","), self.prim("ws"))
        more: Expr = EMPTY
        if tail is not None:
            k = len(prefix)
            more = self.rep(seq(comma, tail), max(0, lo - k - (k == 0)), _minus(hi, k + (k == 0)))
        if prefix:
            for i in range(len(prefix) - 1, 0, -1):
                step = seq(comma, prefix[i], more)
                more = step if i < lo else opt(step)
            elements: Expr = seq(prefix[0], more)
        elif tail is not None and hi != 0:
            elements = seq(tail, more)
        else:
            elements = EMPTY
        ws = self.prim("ws")
        body = EMPTY if elements == EMPTY else seq(elements, ws)
        return self.rule("arr", seq(Lit("["), ws, body if lo else opt(body), Lit("]")))


def _minus(hi: int | None, n: int) -> int | None:
    return None if hi is None else max(0, hi - n)


# ----- public API ----------------------------------------------------------------------------


_KNOWN_SCHEMAS = 256  # compiled schemas remembered: clients send the same one again and again
_KNOWN_CHARS = 65_536  # longer schemas or grammars are not remembered
_known: OrderedDict[str, tuple[bool, str]] = OrderedDict()  # schema JSON -> (ok, grammar/why)
_known_lock = threading.Lock()


def schema_to_grammar(schema: dict[str, Any]) -> str:
    """GBNF (start rule `root`) for JSON valid against `schema`; InvalidSchema if impossible."""
    if not isinstance(schema, dict):
        raise InvalidSchema("the JSON schema must be a JSON object")
    check_size(schema)
    key = json.dumps(schema, ensure_ascii=False)  # key order matters: properties keep it
    with _known_lock:
        known = _known.get(key)
        if known is not None:
            _known.move_to_end(key)
    if known is None:
        try:
            known = (True, _compile(schema))
        except InvalidSchema as exc:
            known = (False, exc.message)
        if len(key) <= _KNOWN_CHARS and len(known[1]) <= _KNOWN_CHARS:
            with _known_lock:
                _known[key] = known
                while len(_known) > _KNOWN_SCHEMAS:
                    _known.popitem(last=False)
    ok, text = known
    if not ok:
        raise InvalidSchema(text)
    return text


def _compile(schema: dict[str, Any]) -> str:
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
    checker.checkers = {f: known[f] for f in FORMATS if f in known}
    error = best_match(Draft202012Validator(schema, format_checker=checker).iter_errors(value))
    if error is not None:
        raise InvalidOutput(f"the output does not match the schema: {error.message}")
    return value
