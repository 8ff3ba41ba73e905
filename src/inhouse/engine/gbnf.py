"""GBNF, the grammar language of llama.cpp: expressions, rendering, and a termination check.

The JSON-schema compiler (grammar.py) builds rules from these expressions; `render_grammar`
writes them out with the shared JSON rules they use, and `check_terminates` refuses rule
sets in which some rule can never finish (recursion without a way out).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass

from inhouse.errors import InvalidSchema

MAX_REPEAT = 256  # a larger maxLength / maxItems is lowered to this (stricter, still valid)

# Shared rules: name -> (GBNF, the shared rules it uses).
_DAY31 = '"0" [1-9] | [12] [0-9] | "3" [01]'
PRIMITIVES: dict[str, tuple[str, tuple[str, ...]]] = {
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


# ----- grammar expressions ------------------------------------------------------------------


@dataclass(frozen=True)
class Lit:
    text: str


@dataclass(frozen=True)
class Chars:
    gbnf: str  # a character class written in GBNF, e.g. "[0-9]"


@dataclass(frozen=True)
class Ref:
    name: str


@dataclass(frozen=True)
class Seq:
    parts: tuple[Expr, ...]


@dataclass(frozen=True)
class Alt:
    options: tuple[Expr, ...]


@dataclass(frozen=True)
class Rep:
    expr: Expr
    lo: int
    hi: int | None


Expr = Lit | Chars | Ref | Seq | Alt | Rep
EMPTY = Seq(())
DIGIT = Chars("[0-9]")


def seq(*parts: Expr) -> Expr:
    """A sequence without empty parts; a single part stands for itself."""
    kept = tuple(p for p in parts if p != EMPTY)
    return kept[0] if len(kept) == 1 else Seq(kept)


def alt(*options: Expr) -> Expr:
    """Alternatives without duplicates; a single option stands for itself."""
    kept = tuple(dict.fromkeys(options))
    return kept[0] if len(kept) == 1 else Alt(kept)


def opt(expr: Expr) -> Expr:
    return EMPTY if expr == EMPTY else Rep(expr, 0, 1)


_TRIE_DEPTH = 32  # deeper branching stays a plain list of alternatives (recursion depth)


def common_prefix(texts: Sequence[str]) -> str:
    """The longest text all of `texts` start with."""
    if not texts:
        return ""
    low, high = min(texts), max(texts)  # what the extremes share, all share
    n = next((i for i, (a, b) in enumerate(zip(low, high, strict=False)) if a != b), len(low))
    return low[:n]


def literals(texts: Sequence[str]) -> Expr:
    """Any one of `texts`, as a trie: alternatives sharing a prefix share its parse stack."""
    return _trie(sorted(set(texts)), 0, 0)


def _trie(texts: list[str], start: int, level: int) -> Expr:
    """Any one of `texts` (sorted, sharing text[:start]) from `start` on."""
    ends = texts[0] == texts[0][:start]  # the shortest one ends here (sorted: it is first)
    rest = texts[1:] if ends else texts
    options: list[Expr] = []
    if level >= _TRIE_DEPTH:
        options += [Lit(t[start:]) for t in rest]
    else:
        for _, group in itertools.groupby(rest, key=lambda t: t[start]):
            same = list(group)
            common = len(common_prefix(same))
            head = Lit(same[0][start:common])
            options.append(seq(head, _trie(same, common, level + 1)) if len(same) > 1 else head)
    if not options:
        return EMPTY
    return opt(alt(*options)) if ends else alt(*options)


def refs_of(expr: Expr) -> Iterator[str]:
    """Names of the rules `expr` refers to."""
    todo = [expr]
    while todo:
        e = todo.pop()
        if isinstance(e, Ref):
            yield e.name
        elif isinstance(e, Seq):
            todo.extend(e.parts)
        elif isinstance(e, Alt):
            todo.extend(e.options)
        elif isinstance(e, Rep):
            todo.append(e.expr)


def reachable(rules: Mapping[str, Expr]) -> dict[str, Expr]:
    """The rules `root` uses, directly or not (a rule inlined elsewhere may be left unused)."""
    keep, todo = {"root"}, ["root"]
    while todo:
        for name in refs_of(rules[todo.pop()]):
            if name in rules and name not in keep:
                keep.add(name)
                todo.append(name)
    return {name: body for name, body in rules.items() if name in keep}


def flatten(expr: Expr, whole: Container[int] = ()) -> tuple[Expr, ...]:
    """`expr` as the flat sequence of its parts, but for those in `whole` (by id)."""
    if isinstance(expr, Seq) and id(expr) not in whole:
        return tuple(part for p in expr.parts for part in flatten(p, whole))
    return (expr,)


def factor(options: list[tuple[Expr, ...]]) -> Expr:
    """Any one of the part sequences `options`, the parts they start with written once."""
    groups: dict[Expr, list[tuple[Expr, ...]]] = {}
    for parts in options:
        if parts:
            groups.setdefault(parts[0], []).append(parts[1:])
    out = [
        seq(first, factor(rests)) if len(rests) > 1 else seq(first, *rests[0])
        for first, rests in groups.items()
    ]
    if not out:
        return EMPTY
    return opt(alt(*out)) if () in options else alt(*out)


def nullable(expr: Expr, rules: Mapping[str, Expr], seen: frozenset[str] = frozenset()) -> bool:
    """Whether `expr` matches the empty text (`rules`: bodies of the rules it refers to)."""
    if isinstance(expr, Ref):
        body = rules.get(expr.name)
        if body is None or expr.name in seen:
            return expr.name == "ws"
        return nullable(body, rules, seen | {expr.name})
    if isinstance(expr, Seq):
        return all(nullable(p, rules, seen) for p in expr.parts)
    if isinstance(expr, Alt):
        return any(nullable(o, rules, seen) for o in expr.options)
    if isinstance(expr, Rep):
        return expr.lo == 0 or nullable(expr.expr, rules, seen)
    return isinstance(expr, Lit) and not expr.text


def quote(text: str) -> str:
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


def _render(expr: Expr) -> str:
    """GBNF text of `expr`, usable as the right-hand side of a rule."""
    if isinstance(expr, Alt):
        return " | ".join(_render(o) for o in expr.options)
    if isinstance(expr, Seq):
        return " ".join(_atom(p) if isinstance(p, Alt) else _render(p) for p in expr.parts) or '""'
    if isinstance(expr, Rep):
        hi = "" if expr.hi is None else str(expr.hi)
        suffix = {(0, "1"): "?", (0, ""): "*", (1, ""): "+"}.get((expr.lo, hi))
        if expr.lo == expr.hi:
            suffix = f"{{{hi}}}"
        return _atom(expr.expr) + (suffix or f"{{{expr.lo},{hi}}}")
    if isinstance(expr, Lit):
        return quote(expr.text)
    return expr.gbnf if isinstance(expr, Chars) else expr.name


def _atom(expr: Expr) -> str:
    text = _render(expr)
    return text if isinstance(expr, Lit | Chars | Ref) else f"({text})"


def render_grammar(rules: dict[str, Expr], shared: set[str]) -> str:
    """The grammar text: `root` first, then the other rules, then the shared rules they use."""
    needed: list[str] = []
    todo = sorted(shared)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.append(name)
            todo.extend(PRIMITIVES[name][1])
    lines = [f"root ::= {_render(rules['root'])}"]
    lines += [f"{name} ::= {_render(body)}" for name, body in rules.items() if name != "root"]
    lines += [f"{name} ::= {PRIMITIVES[name][0]}" for name in sorted(needed)]
    return "\n".join(lines) + "\n"


# ----- termination ---------------------------------------------------------------------------


def _derives(expr: Expr, known: set[str], leaf: Callable[[Lit | Chars], bool]) -> bool:
    """Whether `expr` derives a text passing `leaf`, given the rules `known` to do so."""
    if isinstance(expr, Ref):
        return expr.name in known
    if isinstance(expr, Seq):
        return all(_derives(p, known, leaf) for p in expr.parts)
    if isinstance(expr, Alt):
        return any(_derives(o, known, leaf) for o in expr.options)
    if isinstance(expr, Rep):
        return expr.lo == 0 or _derives(expr.expr, known, leaf)
    return leaf(expr)


def _fixpoint(
    rules: dict[str, Expr], start: set[str], leaf: Callable[[Lit | Chars], bool]
) -> set[str]:
    """The rules that derive a text passing `leaf` (least fixed point)."""
    known = set(start)
    changed = True
    while changed:
        new = {n for n, body in rules.items() if n not in known and _derives(body, known, leaf)}
        known |= new
        changed = bool(new)
    return known


def _left_refs(expr: Expr, empty: set[str]) -> set[str]:
    """Rules that `expr` can enter before consuming any character."""
    if isinstance(expr, Ref):
        return {expr.name}
    if isinstance(expr, Alt):
        return set().union(*(_left_refs(o, empty) for o in expr.options))
    if isinstance(expr, Rep):
        return _left_refs(expr.expr, empty) if expr.hi != 0 else set()
    found: set[str] = set()
    for part in expr.parts if isinstance(expr, Seq) else ():
        found |= _left_refs(part, empty)
        if not _derives(part, empty, lambda e: isinstance(e, Lit) and not e.text):
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


def check_terminates(rules: dict[str, Expr], refs: dict[str, str]) -> None:
    """Raise InvalidSchema unless every rule can finish and none re-enters itself at once."""
    finishing = _fixpoint(rules, set(PRIMITIVES), lambda e: True)
    empty = _fixpoint(rules, {"ws"}, lambda e: isinstance(e, Lit) and not e.text)
    graph = {n: _left_refs(body, empty) & rules.keys() for n, body in rules.items()}
    if finishing >= rules.keys() and not _has_cycle(graph):
        return
    where = [ptr for ptr, name in refs.items() if name not in finishing] or list(refs)
    raise InvalidSchema(
        f"the schema is recursive without bound (no finite value): {', '.join(where) or '#'}"
    )
