"""Scorers for the evaluation gate (no model): what each accepts and refuses, typed errors for
unusable specs, and a catastrophically backtracking pattern bounded by the match timeout."""

from __future__ import annotations

import importlib.util
import time

import pytest

from inhouse.errors import InvalidRequest
from inhouse.tuning.scorers import MAX_PATTERN, InvalidScorer, normalise, parse_scorer
from tests.conftest import need

REGEX = importlib.util.find_spec("regex") is not None  # the tuning extra brings it


def test_exact_ignores_case_surrounding_space_and_final_punctuation() -> None:
    exact = parse_scorer("exact")
    assert exact("  Paris. ", "paris")
    assert exact("PARIS!", "Paris")
    assert exact("The  answer\nis 42", "the answer is 42.")
    assert exact("\uff30\uff41\uff52\uff49\uff53\uff1f", "paris")  # full-width forms, NFKC
    assert not exact("Paris, France", "Paris")
    assert not exact("Lyon", "Paris")
    assert not exact("", "Paris")
    assert normalise(" Hello,  World!! ") == "hello, world"


def test_contains_finds_the_normalised_answer_inside_the_output() -> None:
    contains = parse_scorer("contains")
    assert contains("I think the capital is PARIS, of course.", "Paris.")
    assert not contains("I think it is Lyon.", "Paris")
    assert not contains("Pa ris", "Paris")
    assert contains("", "")
    assert not contains("anything", "  ")  # an empty expected answer matches only nothing


def test_regex_matches_the_output() -> None:
    need(REGEX, "the regex package is not installed (the tuning extra)")
    scorer = parse_scorer(r"regex:\b(?:19|20)\d{2}\b")
    assert scorer("It was founded in 1998.", "ignored")
    assert not scorer("It was founded long ago.", "ignored")
    anchored = parse_scorer("regex:^yes$")
    assert anchored("yes", "") and not anchored("yes sir", "")


def test_json_field_compares_with_the_expected_answers_field() -> None:
    scorer = parse_scorer("json:order.status")
    expected = '{"order": {"status": "shipped", "id": 1}}'
    assert scorer('{"order": {"status": "shipped", "id": 2}}', expected)
    assert scorer('```json\n{"order": {"status": "shipped"}}\n```', expected)
    assert not scorer('{"order": {"status": "lost"}}', expected)
    assert not scorer("shipped", expected)  # not JSON
    assert not scorer('{"order": "shipped"}', expected)  # no such field
    assert not scorer('{"order": {}}', '{"order": {}}')  # missing on both sides: not a match
    assert not scorer("[" * 100_000, expected)  # too deep for the parser: not a match
    assert parse_scorer("json:n")('{"n": 3}', '{"n": 3}')


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "exactly",
        "exact:x",
        "contains:",
        "regex:",
        "regex:(unclosed",
        "regex:a{2,1}",
        "regex:" + "a" * (MAX_PATTERN + 1),
        "json:",
        "json:a..b",
        "json:" + "f" * 300,
        "python:print(1)",
    ],
)
def test_unusable_specs_are_refused_with_a_typed_error(spec: str) -> None:
    # without the regex package every regex spec is refused, for that reason
    with pytest.raises(InvalidScorer) as caught:
        parse_scorer(spec)
    assert isinstance(caught.value, InvalidRequest)
    assert caught.value.param == "scorer"


def test_a_catastrophically_backtracking_pattern_is_cut_off_by_the_timeout() -> None:
    """`(a|aa)+$` on 40 a's and a b takes exponential time in a backtracking matcher: the
    match gives up after MATCH_TIMEOUT_S and counts as no match."""
    need(REGEX, "the regex package is not installed (the tuning extra)")
    scorer = parse_scorer("regex:(a|aa)+$")
    began = time.monotonic()
    assert not scorer("a" * 40 + "b", "")
    assert time.monotonic() - began < 30  # a hang guard, not a timing assertion
    assert scorer("aaaa", "")
