"""What following a grammar costs llama.cpp, bounded before any request runs.

llama.cpp keeps one parse stack per way the text so far can go on and checks vocabulary
tokens against every stack, so a constrained sample costs about stacks x vocabulary.
Alternatives that begin alike stay alive together (anyOf, enums, optional members), those
nested in one another multiply, and a pattern whose parts can match the same text in many
ways (`(a?){256}`, `a{0,256}a{256}`) keeps hundreds alive. `check_stacks` bounds the stacks
any point of a grammar can have; `PatternCosts` measures each pattern on its automaton.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator, Mapping
from typing import NamedTuple

from inhouse.engine.gbnf import Alt, Chars, Expr, Lit, Ref, Rep, Seq, common_prefix, refs_of
from inhouse.errors import InvalidSchema

MAX_STACKS = 64  # parse stacks alive at once (measured: BENCHMARKS.md, issue 13)
MAX_PATTERN_POSITIONS = 1024  # characters a pattern expands to ({n} copies counted)
MAX_PATTERN_STATES = 500  # automaton states searched per pattern, largest sets first
MAX_SCHEMA_PATTERN_STATES = 5000  # and for all the patterns of one schema together
_KNOWN_PATTERNS = 1024  # patterns whose stacks are remembered across schemas
_MAX_PASSES = 32  # rounds for recursive rules to settle; more means they multiply
_LEAD_CHARS = 64  # leading literals compared up to this length (shorter: more overlap)
_TOP = 0x10FFFF


class Width(NamedTuple):
    """Parse stacks of an expression: on entry, at most inside, inside where it may end."""

    entry: int
    inside: int
    at_exit: int
    nullable: bool
    lead: str  # the literal all its texts start with; "" when unknown


_ONE = Width(1, 1, 0, False, "")
# Shared JSON rules (gbnf.PRIMITIVES), counted by hand from their GBNF.
_PRIMITIVES: dict[str, Width] = {
    "ws": Width(2, 2, 1, True, ""),
    "char": Width(2, 2, 0, False, ""),
    "string": Width(1, 3, 0, False, '"'),
    "boolean": Width(2, 2, 0, False, ""),
    "null": Width(1, 1, 0, False, "null"),
    "natural": Width(2, 2, 1, False, ""),
    "integer": Width(3, 3, 1, False, ""),
    "unsigned": Width(2, 4, 3, False, ""),
    "number": Width(3, 4, 3, False, ""),
    "value": Width(9, 12, 3, False, ""),
    "member": Width(1, 12, 3, False, '"'),
    "object": Width(1, 12, 0, False, "{"),
    "array": Width(1, 12, 0, False, "["),
    "date": Width(1, 3, 0, False, ""),
    "hour": Width(2, 2, 0, False, ""),
    "time": Width(2, 3, 1, False, ""),
    "date-time": Width(1, 3, 1, False, ""),
    "uuid": Width(1, 1, 0, False, ""),
}


def too_costly(what: str, name: str, limit: int) -> InvalidSchema:
    """The 400 for a grammar over a cost limit, naming the limit."""
    return InvalidSchema(
        f"the schema is too costly to follow: {what}, over the limit {name} = {limit}; "
        "use fewer alternatives that start alike, or a simpler pattern"
    )


# ----- grammars ------------------------------------------------------------------------------


def _grouped(items: list[tuple[str, int]]) -> int:
    """Most stacks of alternatives alive together: those whose leading literals agree."""
    if len({lead[:1] for lead, _ in items}) == len(items) and all(lead for lead, _ in items):
        return max((n for _, n in items), default=0)  # all start differently (a trie)
    unknown = sum(n for lead, n in items if not lead)
    sums: dict[str, int] = {}
    for lead, n in items:
        if lead:
            sums[lead[:_LEAD_CHARS]] = sums.get(lead[:_LEAD_CHARS], 0) + n
    keys = sorted(sums)
    totals = [0]
    for key in keys:
        totals.append(totals[-1] + sums[key])
    best = 0
    chain: list[tuple[str, int]] = []  # keys each starting with the one before, and their sums
    for i, key in enumerate(keys):
        while chain and not key.startswith(chain[-1][0]):
            chain.pop()
        shorter = chain[-1][1] if chain else 0  # the keys `key` starts with
        chain.append((key, shorter + sums[key]))
        # keys that start with `key` follow it in sorted order
        high = bisect.bisect_right(keys, key + chr(_TOP), lo=i)
        best = max(best, shorter + totals[high] - totals[i])
    return best + unknown


class _Widths:
    """Stacks of every rule, recursive ones by rounds until they settle."""

    def __init__(self, rules: Mapping[str, Expr], fixed: Mapping[int, tuple[Expr, int]]) -> None:
        self.rules, self.fixed = rules, fixed
        self.values: dict[str, Width] = {}
        self.memo: dict[int, Width] = {}  # id(expr) -> its width, this round

    def of(self, expr: Expr) -> Width:
        known = self.memo.get(id(expr))
        if known is None:
            known = self.memo[id(expr)] = self.compute(expr)
        return known

    def compute(self, expr: Expr) -> Width:
        if id(expr) in self.fixed:
            n = self.fixed[id(expr)][1]
            return Width(n, n, n, False, "")
        if isinstance(expr, Lit):
            return Width(0, 0, 0, True, "") if not expr.text else Width(1, 1, 0, False, expr.text)
        if isinstance(expr, Chars):
            return _ONE
        if isinstance(expr, Ref):
            return _PRIMITIVES.get(expr.name) or self.values.get(expr.name, _ONE)
        if isinstance(expr, Seq):
            return self.seq([self.of(p) for p in expr.parts])
        if isinstance(expr, Alt):
            return self.alt([self.of(o) for o in self.options(expr, 0)])
        return self.rep(self.of(expr.expr), expr.lo, expr.hi)

    def options(self, expr: Alt, depth: int) -> Iterator[Expr]:
        """The alternatives, with those of alternatives (or their rules) inside spliced in."""
        for option in expr.options:
            body = self.rules.get(option.name) if isinstance(option, Ref) else option
            if isinstance(body, Alt) and depth < MAX_STACKS:  # deeper: over the limit anyway
                yield from self.options(body, depth + 1)
            else:
                yield option

    @staticmethod
    def seq(parts: list[Width]) -> Width:
        entries, nullable = [0], True  # entries[k]: stacks on entering parts[-k:]
        for w in reversed(parts):
            entries.append(w.entry + (entries[-1] if w.nullable else 0))
            nullable = nullable and w.nullable
        entries.reverse()
        inside, at_exit, rest_nullable = entries[0], 0, True
        for i in range(len(parts) - 1, -1, -1):
            w, follow = parts[i], entries[i + 1]
            inside = max(inside, w.inside, w.at_exit + follow)
            if rest_nullable:
                at_exit = max(at_exit, w.at_exit + follow)
            rest_nullable = rest_nullable and w.nullable
        lead = parts[0].lead if parts and not parts[0].nullable else ""
        return Width(entries[0], max(inside, at_exit), at_exit, nullable, lead)

    @staticmethod
    def alt(options: list[Width]) -> Width:
        entry = sum(w.entry for w in options)
        leads = [w.lead for w in options]
        inside = _grouped([(w.lead, w.inside) for w in options])
        at_exit = _grouped([(w.lead, w.at_exit) for w in options])
        nullable = any(w.nullable for w in options)
        lead = common_prefix(leads) if all(leads) else ""
        return Width(entry, max(entry, inside, at_exit), at_exit, nullable, lead)

    @staticmethod
    def rep(w: Width, lo: int, hi: int | None) -> Width:
        more = hi is None or hi > 1
        copies = (hi or 1) if w.nullable else 1  # an empty copy lets the next one start too
        at_exit = w.at_exit + (w.entry if more else 0)
        entry = w.entry * copies
        return Width(
            entry, max(entry, w.inside, at_exit), at_exit, lo == 0 or w.nullable, w.lead * (lo > 0)
        )

    def order(self) -> tuple[list[str], bool]:
        """Rule names, each after the rules it uses (but for recursion), from `root`; and
        whether some rule is recursive."""
        done: list[str] = []
        seen, open_ = {"root"}, {"root"}
        recursive = False
        stack: list[tuple[str, Iterator[str]]] = [("root", refs_of(self.rules["root"]))]
        while stack:
            name, todo = stack[-1]
            for ref in todo:
                recursive = recursive or ref in open_
                if ref in self.rules and ref not in seen:
                    seen.add(ref)
                    open_.add(ref)
                    stack.append((ref, refs_of(self.rules[ref])))
                    break
            else:
                done.append(name)
                open_.discard(name)
                stack.pop()
        return done, recursive

    def settle(self) -> int:
        """Most stacks alive at any point of the grammar; InvalidSchema if they multiply."""
        order, recursive = self.order()
        for _ in range(_MAX_PASSES):
            before, self.memo = dict(self.values), {}
            for name in order:
                self.values[name] = self.of(self.rules[name])
            if self.values == before or not recursive:  # without recursion, one round is exact
                return max(self.values["root"].inside, self.values["root"].entry)
        raise too_costly(
            "recursive alternatives that start alike multiply the ways to continue with every "
            "level of nesting",
            "MAX_STACKS",
            MAX_STACKS,
        )


def check_stacks(rules: Mapping[str, Expr], fixed: Mapping[int, tuple[Expr, int]]) -> int:
    """The most stacks the grammar `rules` keeps alive (`fixed`: id(expr) -> (expr, its stacks
    as measured, e.g. for a pattern)); InvalidSchema beyond MAX_STACKS."""
    stacks = _Widths(rules, fixed).settle()
    if stacks > MAX_STACKS:
        raise too_costly(f"{stacks} ways to continue can be open at once", "MAX_STACKS", MAX_STACKS)
    return stacks


# ----- patterns ------------------------------------------------------------------------------

_Ranges = tuple[tuple[int, int], ...]
_Built = tuple[set[int], set[int], bool]  # first positions, last positions, matches empty


def class_ranges(gbnf: str) -> _Ranges:
    """The code points a GBNF character class such as `[^"\\\\\\x00-\\x1F]` matches."""
    negated = gbnf.startswith("[^")
    body, i, points = gbnf[2 if negated else 1 : -1], 0, []
    while i < len(body):
        cp, i = _class_point(body, i)
        if body[i : i + 1] == "-" and i + 1 < len(body):
            high, i = _class_point(body, i + 1)
            points.append((cp, high))
        else:
            points.append((cp, cp))
    if not negated:
        return tuple(sorted(points))
    out, start = [], 0
    for low, high in sorted(points):
        if low > start:
            out.append((start, low - 1))
        start = max(start, high + 1)
    return tuple(out + ([(start, _TOP)] if start <= _TOP else []))


def _class_point(body: str, i: int) -> tuple[int, int]:
    if body[i] != "\\":
        return ord(body[i]), i + 1
    kind = body[i + 1]
    digits = {"x": 2, "u": 4, "U": 8}.get(kind)
    if digits:
        return int(body[i + 2 : i + 2 + digits], 16), i + 2 + digits
    return ord({"n": "\n", "t": "\t", "r": "\r"}.get(kind, kind)), i + 2


class _Automaton:
    """The pattern's positions (one per character it expands to) and which may follow which."""

    def __init__(self, rules: Mapping[str, Expr]) -> None:
        self.rules = rules
        self.chars: list[_Ranges] = []
        self.follow: list[set[int]] = []

    def add(self, chars: _Ranges) -> int:
        if len(self.chars) >= MAX_PATTERN_POSITIONS:
            raise too_costly(
                "a pattern expands to more characters (counting each {n} repetition)",
                "MAX_PATTERN_POSITIONS",
                MAX_PATTERN_POSITIONS,
            )
        self.chars.append(chars)
        self.follow.append(set())
        return len(self.chars) - 1

    def build(self, expr: Expr) -> _Built:
        """(first positions, last positions, matches empty) of `expr`, built afresh."""
        if isinstance(expr, Lit):
            parts = [({p}, {p}, False) for p in (self.add(((ord(c), ord(c)),)) for c in expr.text)]
            return self.chain(parts)
        if isinstance(expr, Chars):
            p = self.add(class_ranges(expr.gbnf))
            return {p}, {p}, False
        if isinstance(expr, Ref):
            return self.build(self.rules[expr.name])
        if isinstance(expr, Seq):
            return self.chain([self.build(p) for p in expr.parts])
        if isinstance(expr, Alt):
            built = [self.build(o) for o in expr.options]
            return (
                set().union(*(b[0] for b in built)),
                set().union(*(b[1] for b in built)),
                any(b[2] for b in built),
            )
        return self.repeat(expr)

    def repeat(self, expr: Rep) -> _Built:
        """lo copies, then optional ones each after the one before, as llama.cpp nests them."""
        n = expr.lo + 1 if expr.hi is None else expr.hi
        copies = [self.build(expr.expr) for _ in range(n)]
        first, last, nullable = self.chain(copies[: expr.lo])
        for i in range(expr.lo, n):
            c_first, c_last, _ = copies[i]
            for p in last if i == expr.lo else copies[i - 1][1]:
                self.follow[p] |= c_first
            if i == 0:
                first = set(c_first)
            last = last | c_last
        if expr.hi is None:
            for p in copies[-1][1]:
                self.follow[p] |= copies[-1][0]
        return first, last, nullable or expr.lo == 0

    def chain(self, parts: list[_Built]) -> _Built:
        first: set[int] = set()
        last: set[int] = set()
        nullable = True
        for p_first, p_last, p_nullable in parts:
            for p in last:
                self.follow[p] |= p_first
            if nullable:
                first |= p_first
            last = (last | p_last) if p_nullable else set(p_last)
            nullable = nullable and p_nullable
        return first, last, nullable

    def most_alive(self, start: set[int], states: int) -> tuple[int, int]:
        """The most positions one text can leave open, searching the largest sets first
        (up to `states` sets), and the number of sets searched."""
        best, seen = len(start), {frozenset(start)}
        heap = [(-len(start), 0, frozenset(start))]
        count = 0
        while heap and len(seen) < states and best <= MAX_STACKS:
            _, _, alive = heapq.heappop(heap)
            for nxt in self.steps(alive):
                if nxt not in seen:
                    seen.add(nxt)
                    best = max(best, len(nxt))
                    count += 1
                    heapq.heappush(heap, (-len(nxt), count, nxt))
        return best, len(seen)

    def steps(self, alive: frozenset[int]) -> Iterator[frozenset[int]]:
        """The sets of open positions after each distinct next character."""
        cuts = sorted({b for p in alive for low, high in self.chars[p] for b in (low, high + 1)})
        for cp in cuts:
            nxt = frozenset(
                q
                for p in alive
                if any(low <= cp <= high for low, high in self.chars[p])
                for q in self.follow[p]
            )
            if nxt:
                yield nxt


_known: dict[str, int] = {}  # pattern -> its stacks


class PatternCosts:
    """Measures the patterns of one schema within a shared search budget."""

    def __init__(self) -> None:
        self.states_left = MAX_SCHEMA_PATTERN_STATES

    def stacks(self, pattern: str, expr: Expr, rules: Mapping[str, Expr]) -> int:
        """The most llama.cpp stacks the text of `pattern` (compiled: `expr`) keeps alive at
        once; InvalidSchema beyond MAX_STACKS, MAX_PATTERN_POSITIONS or the search budget."""
        if pattern in _known:
            return _known[pattern]
        if self.states_left <= 0:
            raise too_costly(
                "the schema's patterns take more automaton states to check",
                "MAX_SCHEMA_PATTERN_STATES",
                MAX_SCHEMA_PATTERN_STATES,
            )
        automaton = _Automaton(rules)
        first, _, _ = automaton.build(expr)
        stacks, used = automaton.most_alive(first, min(MAX_PATTERN_STATES, self.states_left))
        self.states_left -= used
        if stacks > MAX_STACKS:
            raise too_costly(
                f"a pattern can match one text in at least {stacks} ways at once",
                "MAX_STACKS",
                MAX_STACKS,
            )
        if len(_known) >= _KNOWN_PATTERNS:
            _known.clear()
        _known[pattern] = stacks
        return stacks
