"""Data sets for tuning, parsed and checked before anything is stored.

Formats: OpenAI's fine-tuning chat JSONL (`{"messages": [...]}` per line, roles system, user
and assistant, at least one assistant turn per example) and plain text (continued
pre-training: one example per paragraph). Every problem is reported with its line number and
the whole data set is refused; then examples are optionally redacted, deduplicated (after
redaction, so two texts that differ only in an e-mail address count once) and split into
train and eval by a seeded shuffle, so the same data and split give the same sets.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from inhouse.audit.redact import BUILTINS, Redactor
from inhouse.errors import InvalidRequest

ROLES = ("system", "user", "assistant")
MAX_ERRORS_SHOWN = 10
MAX_EVAL_SPLIT = 0.5
SPLIT_SEED = 20_251_201  # fixed: the same data and split always give the same sets

Example = dict[str, Any]  # {"messages": [...]} or {"text": "..."}


class Format(enum.StrEnum):
    CHAT = "chat"  # OpenAI fine-tuning JSONL
    TEXT = "text"  # plain text, one example per paragraph


class InvalidTrainingFile(InvalidRequest):
    """The data set has problems (listed with their line numbers); nothing was stored."""

    code = "invalid_training_file"

    def __init__(self, problems: list[str]) -> None:
        shown = "; ".join(problems[:MAX_ERRORS_SHOWN])
        more = len(problems) - MAX_ERRORS_SHOWN
        tail = f"; and {more} more" if more > 0 else ""
        super().__init__(f"the data set was refused ({shown}{tail})", param="file")
        self.problems = problems


@dataclass
class Prepared:
    """Checked examples, split: what a data set stores."""

    train: list[Example]
    eval: list[Example]
    duplicates: int = 0
    redacted: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def examples(self) -> int:
        return len(self.train) + len(self.eval)


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidTrainingFile([f"line {line}: not UTF-8 text"]) from None


def parse_chat(text: str) -> list[Example]:
    """One example per non-blank line; InvalidTrainingFile naming every bad line."""
    examples: list[Example] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            example = chat_example(json.loads(line))
        except (ValueError, RecursionError) as exc:
            reason = "not valid JSON" if not isinstance(exc, InvalidRequest) else exc.message
            problems.append(f"line {number}: {reason}")
            continue
        examples.append(example)
    if problems:
        raise InvalidTrainingFile(problems)
    return examples


class BadExample(InvalidRequest, ValueError):
    """One example that is JSON but not a chat example (the reason, without a line)."""


def chat_example(value: Any) -> Example:
    """The example `{"messages": [...]}` holds, reduced to role and content of each turn."""
    if not isinstance(value, dict) or not isinstance(value.get("messages"), list):
        raise BadExample('an example is an object with a "messages" list')
    messages = []
    for turn in value["messages"]:
        if not isinstance(turn, dict) or turn.get("role") not in ROLES:
            role = turn.get("role") if isinstance(turn, dict) else None
            raise BadExample(f"role {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(turn.get("content"), str):
            raise BadExample(f"a {turn['role']} turn has no text content")
        messages.append({"role": turn["role"], "content": turn["content"]})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        raise BadExample("no assistant turn: nothing to learn from")
    return {"messages": messages}


def parse_text(text: str) -> list[Example]:
    """One example per paragraph (text between blank lines), whitespace kept inside."""
    paragraphs = []
    current: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.strip():
            current.append(line.rstrip())
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    return [{"text": p} for p in paragraphs]


def parse(data: bytes, kind: Format) -> list[Example]:
    text = decode(data)
    return parse_chat(text) if kind is Format.CHAT else parse_text(text)


def redactor() -> Redactor:
    """Every built-in redactor (e-mail, card, IBAN, national id, phone)."""
    return Redactor(list(BUILTINS))


def redact(example: Example, with_: Redactor) -> Example:
    if "text" in example:
        return {"text": with_.redact(example["text"])}
    turns = example["messages"]
    return {"messages": [t | {"content": with_.redact(t["content"])} for t in turns]}


def fingerprint(example: Example) -> str:
    canonical = json.dumps(example, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def prepare(examples: Iterable[Example], eval_split: float, pii: bool) -> Prepared:
    """Redact (if `pii`), deduplicate and split; an empty data set is refused."""
    if not 0 <= eval_split <= MAX_EVAL_SPLIT:
        raise InvalidRequest(
            f"the eval split must be between 0 and {MAX_EVAL_SPLIT}", param="eval_split"
        )
    scrub = redactor() if pii else None
    unique: dict[str, Example] = {}
    seen = 0
    for example in examples:
        seen += 1
        cleaned = redact(example, scrub) if scrub is not None else example
        unique.setdefault(fingerprint(cleaned), cleaned)
    if not unique:
        raise InvalidTrainingFile(["it holds no example"])
    train, held = split(list(unique.values()), eval_split)
    return Prepared(train, held, duplicates=seen - len(unique), redacted=pii)


def split(examples: list[Example], eval_split: float) -> tuple[list[Example], list[Example]]:
    """(train, eval): `eval_split` of the examples (at least one, never all) held out."""
    if eval_split == 0 or len(examples) < 2:
        return examples, []
    count = min(len(examples) - 1, max(1, math.ceil(len(examples) * eval_split)))
    order = list(range(len(examples)))
    random.Random(SPLIT_SEED).shuffle(order)
    held = set(order[:count])
    train = [e for i, e in enumerate(examples) if i not in held]
    return train, [e for i, e in enumerate(examples) if i in held]
