"""Training examples: read from JSONL, tokenized with their loss mask, batched by length.

Chat examples are rendered with the tokenizer's chat template; only assistant content and
its end-of-turn token carry labels (everything else is -100, ignored by the loss). The
assistant spans are found by rendering the conversation prefix by prefix: the text an
assistant turn adds after the generation prompt is exactly what the model must learn.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inhouse.errors import InvalidRequest
from inhouse.tuning.datasets import BadExample, Example, InvalidTrainingFile, chat_example

IGNORE = -100
GROUP_FACTOR = 32  # batches per length-sorted group: padding saved vs order kept random


class NoTrainableTokens(InvalidRequest):
    """After truncation no example has a token to learn from (e.g. no assistant turns)."""

    code = "no_assistant_turns"


@dataclass(frozen=True)
class Encoded:
    """One example as token ids and labels (IGNORE where no loss is taken)."""

    ids: list[int]
    labels: list[int]

    @property
    def trained(self) -> int:
        """Tokens the loss predicts (a label is predicted from the token before it)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE)


def read_examples(path: Path, kind: str) -> list[Example]:
    """Every example of a JSONL file; InvalidTrainingFile naming each bad line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidTrainingFile([f"{path.name}: cannot be read ({exc})"]) from None
    examples: list[Example] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            examples.append(_example(json.loads(line), kind))
        except (ValueError, RecursionError) as exc:
            reason = exc.message if isinstance(exc, BadExample) else "not valid JSON"
            problems.append(f"line {number}: {reason}")
    if problems:
        raise InvalidTrainingFile(problems)
    if not examples:
        raise InvalidTrainingFile([f"{path.name} holds no example"])
    return examples


def _example(value: Any, kind: str) -> Example:
    if kind == "chat":
        return chat_example(value)
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        raise BadExample('a text example is an object with a "text" string')
    return {"text": value["text"]}


def encode(tokenizer: Any, example: Example, max_length: int) -> Encoded:
    """Token ids and labels of one example, truncated to `max_length` tokens."""
    if "text" in example:
        ids = tokenizer(example["text"], add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = [*ids, tokenizer.eos_token_id]
        ids = ids[:max_length]
        return Encoded(ids, list(ids))
    text, spans = assistant_spans(tokenizer, example["messages"])
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, labels = [], []
    for token, (start, _end) in zip(
        encoding["input_ids"][:max_length], encoding["offset_mapping"], strict=False
    ):
        ids.append(token)
        labels.append(token if any(a <= start < b for a, b in spans) else IGNORE)
    return Encoded(ids, labels)


def assistant_spans(
    tokenizer: Any, messages: Sequence[dict[str, str]]
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of assistant content + end of turn."""
    spans: list[tuple[int, int]] = []
    turn = ""
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:index], generation_prompt=True)
        turn = _render(tokenizer, messages[: index + 1], generation_prompt=False)
        if not turn.startswith(prompt):
            raise InvalidRequest(
                "the model's chat template does not render conversations prefix by prefix; "
                "its assistant turns cannot be told apart"
            )
        spans.append((len(prompt), len(turn.rstrip())))
    text = _render(tokenizer, messages, generation_prompt=False)
    if spans and not text.startswith(turn):
        raise InvalidRequest("the model's chat template renders a turn differently later on")
    return text, spans


def _render(tokenizer: Any, messages: Sequence[dict[str, str]], generation_prompt: bool) -> str:
    rendered = tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=generation_prompt
    )
    return str(rendered)


def encode_all(
    tokenizer: Any, examples: Sequence[Example], max_length: int
) -> tuple[list[Encoded], int]:
    """(kept, dropped): examples with no token left to learn from are dropped and counted."""
    kept = [encode(tokenizer, example, max_length) for example in examples]
    useful = [e for e in kept if e.trained > 0]
    return useful, len(kept) - len(useful)


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int
) -> list[list[int]]:
    """Example indices per batch for one epoch: shuffled by (seed, epoch), then grouped so
    that a batch holds examples of similar length (less padding), batch order shuffled."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    group = batch_size * GROUP_FACTOR
    batches: list[list[int]] = []
    for start in range(0, len(order), group):
        chunk = sorted(order[start : start + group], key=lambda i: -lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def steps_per_epoch(examples: int, batch_size: int) -> int:
    """Batches per epoch; the last partial batch of each length group counts too."""
    group = batch_size * GROUP_FACTOR
    full, rest = divmod(examples, group)
    return full * GROUP_FACTOR + -(-rest // batch_size)
