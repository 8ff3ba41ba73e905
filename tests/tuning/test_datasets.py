"""Parsing, checking, redacting, deduplicating and splitting data sets (no database)."""

from __future__ import annotations

import json

import pytest

from inhouse.errors import InvalidRequest
from inhouse.tuning.datasets import (
    Format,
    InvalidTrainingFile,
    parse,
    prepare,
)


def chat(question: str, answer: str, system: str | None = None) -> str:
    turns = [{"role": "system", "content": system}] if system else []
    turns += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return json.dumps({"messages": turns})


def jsonl(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def test_chat_jsonl_keeps_role_and_content_of_every_turn() -> None:
    data = jsonl(chat("Hi?", "Hello.", system="Be brief."), "", chat("2+2?", "4"))
    examples = parse(data, Format.CHAT)
    assert examples == [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi?"},
                {"role": "assistant", "content": "Hello."},
            ]
        },
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
    ]


def test_every_bad_line_is_reported_by_its_number() -> None:
    no_answer = json.dumps({"messages": [{"role": "user", "content": "Hi"}]})
    bad_role = json.dumps({"messages": [{"role": "robot", "content": "x"}]})
    data = jsonl(
        chat("a", "b"), "{not json", no_answer, chat("c", "d"), bad_role, "[1, 2]", chat("e", "")
    )
    with pytest.raises(InvalidTrainingFile) as refused:
        parse(data, Format.CHAT)
    problems = refused.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "line 2",
        "line 3",
        "line 5",
        "line 6",
        "line 7",
    ]
    assert "not valid JSON" in problems[0]
    assert "no assistant turn" in problems[1] and "no assistant turn" in problems[4]
    assert "'robot'" in problems[2]
    assert refused.value.status == 400 and refused.value.code == "invalid_training_file"
    assert "line 2" in refused.value.message and "line 7" in refused.value.message


def test_a_file_that_is_not_utf8_is_refused_with_its_line() -> None:
    with pytest.raises(InvalidTrainingFile, match="line 2: not UTF-8"):
        parse(jsonl(chat("a", "b")) + b"\xff\xfe\n", Format.CHAT)


def test_an_empty_data_set_is_refused() -> None:
    for data, kind in ((b"", Format.CHAT), (b"\n  \n", Format.CHAT), (b"\n\n", Format.TEXT)):
        with pytest.raises(InvalidTrainingFile, match="no example"):
            prepare(parse(data, kind), 0.1, pii=False)


def test_plain_text_is_one_example_per_paragraph() -> None:
    text = b"First line\nstill first.\n\n\nSecond paragraph.\n  \nThird."
    assert parse(text, Format.TEXT) == [
        {"text": "First line\nstill first."},
        {"text": "Second paragraph."},
        {"text": "Third."},
    ]


def test_duplicates_are_dropped_and_counted_after_redaction() -> None:
    examples = [
        {"text": "Mail ann@example.com about the lease."},
        {"text": "Mail bob@example.org about the lease."},  # the same once redacted
        {"text": "Mail ann@example.com about the lease."},
        {"text": "Call +44 20 7946 0958 or pay with 4111 1111 1111 1111."},
    ]
    plain = prepare(examples, 0.0, pii=False)
    assert plain.examples == 3 and plain.duplicates == 1 and not plain.redacted
    redacted = prepare(examples, 0.0, pii=True)
    assert redacted.duplicates == 2 and redacted.redacted
    assert [e["text"] for e in redacted.train] == [
        "Mail [EMAIL] about the lease.",
        "Call [PHONE] or pay with [CARD].",
    ]


def test_redaction_reaches_every_chat_turn() -> None:
    examples = parse(jsonl(chat("I am ann@example.com", "Hi ann@example.com")), Format.CHAT)
    turns = prepare(examples, 0.0, pii=True).train[0]["messages"]
    assert [t["content"] for t in turns] == ["I am [EMAIL]", "Hi [EMAIL]"]


def test_the_split_is_deterministic_and_holds_out_the_share_asked() -> None:
    examples = [{"text": f"fact {i}"} for i in range(50)]
    first, again = prepare(examples, 0.1, pii=False), prepare(examples, 0.1, pii=False)
    assert len(first.eval) == 5 and len(first.train) == 45
    assert first.eval == again.eval and first.train == again.train
    assert {e["text"] for e in first.eval} | {e["text"] for e in first.train} == {
        e["text"] for e in examples
    }
    assert first.eval != examples[:5]  # shuffled, not the first lines
    assert prepare(examples[:1], 0.5, pii=False).eval == []  # never all held out
    assert len(prepare(examples[:3], 0.01, pii=False).eval) == 1  # at least one


def test_an_eval_split_out_of_range_is_refused() -> None:
    for bad in (-0.1, 0.9):
        with pytest.raises(InvalidRequest, match="eval split"):
            prepare([{"text": "x"}], bad, pii=False)
