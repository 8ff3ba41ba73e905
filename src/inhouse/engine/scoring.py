"""Held-out loss through llama.cpp: how likely a model (+ LoRA adapters) finds each example.

For every example, the negative log-likelihood of its target tokens given what comes before
them, computed from llama.cpp's logits with the same model file and adapter set that serving
loads (the runner's own loading code). The targets are those the trainer takes its loss on
(tuning/trainer/data.py), so the two losses compare: in a chat example, each assistant
message's content and the template's end-of-turn token, its context rendered with the
model's chat template as serving renders a prompt (up to the generation prompt); in a text
example, every token after the first, and the end-of-sequence token.

It runs in the caller's thread on a context of its own (one sequence, `max_length` cells),
freed before it returns; the serving engines are not touched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import llama_cpp as ll
import numpy as np
import numpy.typing as npt

from inhouse.engine.pool import ModelSpec
from inhouse.engine.prompt import TemplateCounts, render_prompt, tokenize_prompt
from inhouse.engine.runner import LlamaRunner
from inhouse.engine.templates import CHATML, ChatTemplate, Message
from inhouse.errors import InvalidRequest

MAX_CHUNK = 256  # tokens per decode: bounds the logits buffer (chunk x vocabulary floats)


@dataclass(frozen=True)
class Scored:
    """One example's summed negative log-likelihood (nats) over its `n_tokens` targets."""

    nll_sum: float
    n_tokens: int


@dataclass(frozen=True)
class Tokenized:
    """An example as token ids, and which of them are scored (predicted from those before)."""

    tokens: tuple[int, ...]
    scored: tuple[bool, ...]


class ScoringRunner(LlamaRunner):
    """A LlamaRunner with one sequence that scores token sequences instead of sampling."""

    def __init__(self, spec: ModelSpec, *, max_length: int, n_threads: int = 0) -> None:
        if max_length < 2:
            raise InvalidRequest("max_length must be at least 2 tokens", param="max_length")
        self.max_length = max_length
        self.chunk = min(max_length, MAX_CHUNK)
        super().__init__(
            spec.path,
            spec.name,
            kv_cells=max_length,
            n_batch=self.chunk,
            n_seq_max=1,
            n_threads=n_threads,
            adapters=spec.adapters,
        )
        info = self.info
        self.template = ChatTemplate(
            info.chat_template or CHATML,
            bos_token=info.bos_token,
            eos_token=info.eos_token,
            adds_bos=info.adds_bos,
        )
        self._counts: TemplateCounts = {}

    def tokens_of(self, example: Mapping[str, Any]) -> Tokenized:
        """`{"messages": [...]}` (chat) or `{"text": "..."}` as tokens and what is scored."""
        if "messages" in example:
            return self._chat_tokens(list(example["messages"]))
        tokens = self.tokenize(str(example["text"]), add_special=True, parse_special=False)
        eos = int(ll.llama_vocab_eos(self._vocab))
        tokens += [eos] if eos >= 0 else []  # as the trainer does: the text ends there
        return Tokenized(tuple(tokens), (False, *(True,) * (len(tokens) - 1))[: len(tokens)])

    def _chat_tokens(self, messages: list[Message]) -> Tokenized:
        """Every assistant turn's content and end-of-turn token is scored (what the trainer
        learns); the rest is context, rendered and tokenized as serving does."""
        tokens: list[int] = []
        scored: list[bool] = []
        for i, message in enumerate(messages):
            if message.get("role") != "assistant":
                continue
            prompt = render_prompt(self.template, messages[:i], add_generation_prompt=True)
            context = tokenize_prompt(self, prompt, self._counts)
            if context[: len(tokens)] != tokens:
                raise InvalidRequest(
                    "the model's chat template does not render this conversation prefix by "
                    "prefix; its assistant turns cannot be scored"
                )
            content = str(message.get("content") or "")
            turn = self.template.render(messages[: i + 1], add_generation_prompt=False)
            answer = self.tokenize(content, add_special=False, parse_special=False)
            answer.append(self._end_of_turn(turn[len(prompt.text) :], content))
            scored += [False] * (len(context) - len(tokens)) + [True] * len(answer)
            tokens = context + answer
        if not tokens:
            raise InvalidRequest("a chat example has no assistant message to score")
        return Tokenized(tuple(tokens), tuple(scored))

    def _end_of_turn(self, turn: str, content: str) -> int:
        """The first end-of-generation token the template writes after the answer (ChatML's
        <|im_end|>), else the model's end-of-sequence token."""
        at = turn.find(content)
        if at >= 0:
            after = self.tokenize(turn[at + len(content) :], add_special=False, parse_special=True)
            for token in after:
                if self.is_end_of_generation(token):
                    return token
        return int(ll.llama_vocab_eos(self._vocab))

    def score(self, example: Tokenized) -> Scored:
        """NLL of the scored tokens, the example truncated to its first `max_length` tokens."""
        full = list(example.tokens[: self.max_length])
        wanted = [j for j in range(len(full) - 1) if example.scored[j + 1]]
        if not wanted:
            return Scored(0.0, 0)
        ll.llama_memory_clear(self._memory, True)
        nll = 0.0
        for start in range(0, wanted[-1] + 1, self.chunk):
            rows = self._decode(full, start, set(wanted))
            if rows:
                nll += self._nll(rows, [full[j + 1] for j in rows.values()])
        return Scored(nll, len(wanted))

    def _decode(self, full: list[int], start: int, wanted: set[int]) -> dict[int, int]:
        """Decode `full[start:start + chunk]` with logits at the `wanted` positions (those
        whose next token is scored). Returns batch row -> position."""
        batch = self._batch
        rows: dict[int, int] = {}
        end = min(start + self.chunk, len(full))
        for i, pos in enumerate(range(start, end)):
            batch.token[i] = full[pos]
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = int(pos in wanted)
            if pos in wanted:
                rows[i] = pos
        batch.n_tokens = end - start
        rc = ll.llama_decode(self._ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with code {rc} while scoring")
        return rows

    def _nll(self, rows: dict[int, int], targets: list[int]) -> float:
        logits = np.stack([self._row_logits(row) for row in rows]).astype(np.float64)
        peak = logits.max(axis=1, keepdims=True)
        log_z = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
        picked = logits[np.arange(len(targets)), targets]
        return float((log_z - picked).sum())

    def _row_logits(self, row: int) -> npt.NDArray[np.float32]:
        return np.ctypeslib.as_array(ll.llama_get_logits_ith(self._ctx, row), (self._n_vocab,))


@contextmanager
def scoring_runner(
    spec: ModelSpec, *, max_length: int, n_threads: int = 0
) -> Iterator[ScoringRunner]:
    """A ScoringRunner for `spec` (GGUF + its adapters), freed when the block ends."""
    runner = ScoringRunner(spec, max_length=max_length, n_threads=n_threads)
    try:
        yield runner
    finally:
        runner.close()


def score_examples(
    spec: ModelSpec,
    examples: Sequence[Mapping[str, Any]],
    *,
    max_length: int = 1024,
    n_threads: int = 0,
) -> list[Scored]:
    """Each example's target NLL under `spec` (base GGUF + adapters), in the caller's thread."""
    with scoring_runner(spec, max_length=max_length, n_threads=n_threads) as runner:
        return [runner.score(runner.tokens_of(example)) for example in examples]
