"""Scorers: whether a model's answer to an evaluation example counts as right.

A scorer is named by a spec string: `exact` (the normalised answer equals the expected one),
`contains` (the normalised expected answer appears in the normalised output), `regex:PATTERN`
(the output matches PATTERN) or `json:FIELD` (the output is JSON whose FIELD, a dotted path,
equals that of the expected answer). Normalised: Unicode NFKC, case folded, whitespace runs
collapsed, surrounding whitespace and final punctuation removed.

A pattern comes from a user, so it is bounded: at most MAX_PATTERN characters, compiled by
the `regex` package, and each match runs under a time limit (MATCH_TIMEOUT_S): a pattern that
backtracks catastrophically, such as `(a|aa)+$`, counts as no match instead of hanging the job.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from inhouse.errors import InvalidRequest

Scorer = Callable[[str, str], bool]
"""(output, expected) -> whether the output is right."""

SCORERS = ("exact", "contains", "regex:PATTERN", "json:FIELD")
MAX_PATTERN = 500
MAX_FIELD = 200
MATCH_TIMEOUT_S = 0.25
_SPACE = re.compile(r"\s+")
_FINAL_PUNCTUATION = ".!?,;:…。"  # after NFKC, which turns full-width ! and ? into these


class InvalidScorer(InvalidRequest):
    """The scorer spec names no scorer, or its pattern or field is unusable."""

    code = "invalid_scorer"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="scorer")


def normalise(text: str) -> str:
    """NFKC, case folded, whitespace collapsed, surrounding space and final punctuation off."""
    folded = _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return folded.rstrip(_FINAL_PUNCTUATION).rstrip()


def exact(output: str, expected: str) -> bool:
    return normalise(output) == normalise(expected)


def contains(output: str, expected: str) -> bool:
    wanted = normalise(expected)
    got = normalise(output)
    return wanted in got if wanted else not got


def parse_scorer(spec: str) -> Scorer:
    """The scorer `spec` names; InvalidScorer when it names none or cannot be built."""
    name, colon, argument = spec.strip().partition(":")
    if name == "exact" and not colon:
        return exact
    if name == "contains" and not colon:
        return contains
    if name == "regex" and colon:
        return _regex_scorer(argument)
    if name == "json" and colon:
        return _json_scorer(argument)
    raise InvalidScorer(f"unknown scorer {spec[:60]!r}; use one of {', '.join(SCORERS)}")


def _regex_scorer(pattern: str) -> Scorer:
    if not pattern or len(pattern) > MAX_PATTERN:
        raise InvalidScorer(f"a regex scorer's pattern has 1 to {MAX_PATTERN} characters")
    try:
        import regex  # type: ignore[import-untyped]  # its matches take a timeout; re's do not
    except ImportError:
        raise InvalidScorer(
            "the regex scorer needs the `regex` package: pip install 'inhouse[tuning]'"
        ) from None
    try:
        compiled = regex.compile(pattern)
    except (regex.error, RecursionError, OverflowError, ValueError) as exc:
        raise InvalidScorer(
            f"the scorer's pattern is not a valid regular expression: {exc}"
        ) from None

    def matches(output: str, expected: str) -> bool:
        try:
            return compiled.search(output, timeout=MATCH_TIMEOUT_S) is not None
        except TimeoutError:  # catastrophic backtracking: not a match
            return False

    return matches


def _json_scorer(field: str) -> Scorer:
    path = field.strip().split(".")
    if not field.strip() or len(field) > MAX_FIELD or not all(path):
        raise InvalidScorer(f"a json scorer names a field (a.b.c) of 1 to {MAX_FIELD} characters")

    def same_field(output: str, expected: str) -> bool:
        got, wanted = _field(output, path), _field(expected, path)
        return got is not _MISSING and got == wanted

    return same_field


_MISSING = object()


def _field(text: str, path: list[str]) -> Any:
    """The value at `path` in the JSON object `text` (inside a ``` fence or not)."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        value: Any = json.loads(body)
    except (ValueError, RecursionError):
        return _MISSING
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value
