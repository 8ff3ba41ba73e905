"""The `pattern` keyword: a subset of regular expressions translated into GBNF, anchored."""

from __future__ import annotations

import json
import re
from typing import Protocol

from inhouse.engine.gbnf import (
    MAX_REPEAT,
    Chars,
    Expr,
    Lit,
    alt,
    seq,
)
from inhouse.errors import InvalidSchema


class Repeater(Protocol):
    def rep(self, expr: Expr, lo: int, hi: int | None) -> Expr:
        """`expr` repeated lo..hi times (hi None: unbounded)."""
        ...

    def matches_empty(self, expr: Expr) -> bool:
        """Whether `expr` matches the empty text."""
        ...


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


def _char_set(negated: bool, ranges: _Ranges) -> Expr:
    """Characters of a set as they appear inside a JSON string (escapes excluded, stricter)."""
    if not negated and len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return Lit(json.dumps(chr(ranges[0][0]), ensure_ascii=False)[1:-1])
    kept = ranges + _NEEDS_ESCAPE if negated else _subtract(ranges, _NEEDS_ESCAPE)
    if not kept:
        raise InvalidSchema("pattern: a character class holds only characters JSON must escape")
    items = "".join(_class_char(a) + ("" if a == b else "-" + _class_char(b)) for a, b in kept)
    return Chars(f"[{'^' if negated else ''}{items}]")


class Regex:
    """A regex subset -> the JSON text of strings that fully match it (which `search` finds).

    Supported: literals, escapes, [classes], ., ASCII \\d \\w \\s, groups, |, ? * + {m,n};
    ^ and $ only at the ends.
    """

    def __init__(self, pattern: str, compiler: Repeater) -> None:
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

    def parse(self) -> Expr:
        expr = self.alternation()
        if self.pos != self.end:
            raise self.fail(f"{self.text[self.pos]!r} at position {self.pos}")
        return expr

    def alternation(self) -> Expr:
        options = [self.sequence()]
        while self.peek() == "|":
            self.pos += 1
            options.append(self.sequence())
        return alt(*options)

    def sequence(self) -> Expr:
        parts = []
        while self.peek() not in ("", "|", ")"):
            parts.append(self.quantified(self.atom()))
        return seq(*parts)

    def quantified(self, atom: Expr) -> Expr:
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
        if (hi is None or hi > 1) and self.compiler.matches_empty(atom):
            # each copy may or may not match: llama.cpp follows every combination at once
            raise InvalidSchema(
                f"pattern {self.text!r}: a repeated part can match the empty text (as in "
                "(a?){256} or (a|b?)*), which makes matching cost explode; the limit: a part "
                "repeated more than once must not match the empty text (write a{0,256})"
            )
        return self.compiler.rep(atom, lo, None if hi is None else min(hi, MAX_REPEAT))

    def atom(self) -> Expr:
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

    def char_class(self) -> Expr:
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
