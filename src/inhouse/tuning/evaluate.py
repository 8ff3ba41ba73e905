"""The evaluation gate: base model vs tuned adapter set on the same held-out examples.

Both numbers come from inhouse's own engine, running what users get:
- loss and perplexity: llama.cpp with the exported GGUF adapter (`engine.scoring`), on the
  tokens the trainer takes its loss on, so the tuned loss compares with the torch-side loss;
- score: the greedy answer (temperature 0, `max_tokens`) to each chat example's prompt (the
  messages before its last assistant message), produced by a served engine through an
  `Answerer` (a ModelPool lease + generate, what /v1/chat/completions runs), judged by a
  scorer (`tuning.scorers`) against that last assistant message.

Inside `inhouse serve`, call `evaluate` from a worker thread with
`PoolAnswerer(app_pool, server_loop)`: the answers share the server's engines with users.
Without a server (the CLI), `with local_answerer(settings.engine) as answerer:` runs a pool of
its own on a private event loop. `evaluate` blocks; it loads each side's scoring context in
the calling thread, one at a time, and frees it before returning.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from inhouse.config import EngineSettings
from inhouse.engine.pool import ModelPool, ModelSpec
from inhouse.engine.protocol import Lease, Message
from inhouse.engine.request import FinishReason, GenerationRequest, SamplingParams
from inhouse.engine.scoring import score_examples
from inhouse.errors import EngineDead, InvalidRequest, Overloaded
from inhouse.tuning.scorers import Scorer, parse_scorer

Example = dict[str, Any]  # {"messages": [...]} or {"text": "..."}, as data sets store them
Progress = Callable[[str, int, int], None]
"""(what, done, total), e.g. ("answers smollm2", 3, 20); raising from it stops the evaluation."""

DEFAULT_TOLERANCE = 0.10  # engine vs torch loss, relative
SHOWN_CHARS = 500
MAX_LENGTH = 1 << 17  # as the trainer's bound
MAX_ANSWER_TOKENS = 4096
LEASE_WAIT_S = 300.0  # how long an answer waits for room on a busy engine


@dataclass(frozen=True)
class EvalOptions:
    scorer: str = "exact"
    max_length: int = 1024  # tokens per example, as the trainer truncates
    max_tokens: int = 64  # per greedy answer
    n_threads: int = 0  # llama.cpp threads for the loss (0: all cores)
    shown: int = 5  # examples whose answers the result keeps for display

    def __post_init__(self) -> None:
        if not 2 <= self.max_length <= MAX_LENGTH:
            raise InvalidRequest(f"max_length is 2 to {MAX_LENGTH} tokens", param="max_length")
        if not 1 <= self.max_tokens <= MAX_ANSWER_TOKENS:
            raise InvalidRequest(
                f"max_tokens is 1 to {MAX_ANSWER_TOKENS} per answer", param="max_tokens"
            )
        if self.n_threads < 0 or self.shown < 0:
            raise InvalidRequest("n_threads and shown cannot be negative")


@dataclass(frozen=True)
class Shown:
    """One example's answer, for display."""

    prompt: str  # the last user message
    expected: str
    output: str
    accepted: bool


@dataclass(frozen=True)
class SideResult:
    """One model's numbers on the evaluation examples."""

    model: str
    loss: float | None  # mean NLL (nats) per target token; None: no target token
    perplexity: float | None
    score: float | None  # fraction of answers the scorer accepts; None: nothing answered
    n: int  # examples
    tokens: int  # target tokens the loss is over
    answered: int  # chat examples answered and scored
    shown: tuple[Shown, ...]
    seconds: float


@dataclass(frozen=True)
class EvalResult:
    base: SideResult
    tuned: SideResult
    scorer: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Answerer(Protocol):
    def answer(self, spec: ModelSpec, messages: Sequence[Message], max_tokens: int) -> str:
        """The served model's greedy answer to `messages` (blocking)."""
        ...


def evaluate(
    base: ModelSpec,
    tuned: ModelSpec,
    examples: Sequence[Example],
    answerer: Answerer | None,
    options: EvalOptions = EvalOptions(),
    progress: Progress | None = None,
) -> EvalResult:
    """Base vs tuned on `examples`: loss through llama.cpp, score through `answerer` (None:
    loss only). InvalidRequest (InvalidScorer) before any work when the input is unusable."""
    scorer = parse_scorer(options.scorer)
    if not examples:
        raise InvalidRequest("there are no evaluation examples", param="eval")
    sides = [_side(spec, examples, scorer, answerer, options, progress) for spec in (base, tuned)]
    return EvalResult(base=sides[0], tuned=sides[1], scorer=options.scorer)


def passes_gate(
    result: EvalResult, torch_loss: float | None = None, *, tolerance: float = DEFAULT_TOLERANCE
) -> tuple[bool, list[str]]:
    """Better: tuned loss < base loss and tuned score >= base score; and, given the trainer's
    held-out loss, the engine's tuned loss within `tolerance` (relative) of it. (ok, reasons)."""
    base, tuned = result.base, result.tuned
    reasons: list[str] = []
    if base.loss is None or tuned.loss is None:
        reasons.append("no held-out token to compare the losses on")
    elif not tuned.loss < base.loss:
        reasons.append(
            f"the held-out loss did not improve: tuned {tuned.loss:.4f} >= base {base.loss:.4f}"
        )
    if base.score is not None and tuned.score is not None and tuned.score < base.score:
        reasons.append(
            f"the {result.scorer} score fell: tuned {tuned.score:.3f} < base {base.score:.3f}"
        )
    if (
        torch_loss is not None
        and tuned.loss is not None
        and _apart(tuned.loss, torch_loss, tolerance)
    ):
        reasons.append(
            "the exported adapter does not behave as trained: its loss in the engine is "
            f"{tuned.loss:.4f}, in torch {torch_loss:.4f} (more than {tolerance:.0%} apart)"
        )
    return not reasons, reasons


def _apart(engine_loss: float, torch_loss: float, tolerance: float) -> bool:
    """Whether the two losses differ by more than `tolerance` of the torch loss."""
    if not math.isfinite(torch_loss):
        return True
    return abs(engine_loss - torch_loss) > tolerance * abs(torch_loss)


def _side(
    spec: ModelSpec,
    examples: Sequence[Example],
    scorer: Scorer,
    answerer: Answerer | None,
    options: EvalOptions,
    progress: Progress | None,
) -> SideResult:
    began = time.perf_counter()
    if progress is not None:
        progress(f"loss {spec.name}", 0, len(examples))
    scored = score_examples(
        spec, examples, max_length=options.max_length, n_threads=options.n_threads
    )
    tokens = sum(s.n_tokens for s in scored)
    loss = sum(s.nll_sum for s in scored) / tokens if tokens else None
    answered, accepted, shown = (
        (0, 0, [])
        if answerer is None
        else _answers(spec, examples, scorer, answerer, options, progress)
    )
    return SideResult(
        model=spec.name,
        loss=loss,
        perplexity=None if loss is None else math.exp(min(loss, 700.0)),
        score=accepted / answered if answered else None,
        n=len(examples),
        tokens=tokens,
        answered=answered,
        shown=tuple(shown),
        seconds=time.perf_counter() - began,
    )


def _answers(
    spec: ModelSpec,
    examples: Sequence[Example],
    scorer: Scorer,
    answerer: Answerer,
    options: EvalOptions,
    progress: Progress | None,
) -> tuple[int, int, list[Shown]]:
    """(answered, accepted, shown): each chat example's answer, judged by `scorer`."""
    asked = [e for e in examples if "messages" in e]
    accepted = 0
    shown: list[Shown] = []
    for i, example in enumerate(asked):
        if progress is not None:
            progress(f"answers {spec.name}", i, len(asked))
        prompt, expected = split_chat(example)
        output = answerer.answer(spec, prompt, options.max_tokens)
        ok = scorer(output, expected)
        accepted += ok
        if len(shown) < options.shown:
            shown.append(Shown(_last_user(prompt), expected[:SHOWN_CHARS], output, ok))
    return len(asked), accepted, shown


def split_chat(example: Example) -> tuple[list[Message], str]:
    """(the messages before the last assistant message, that message's content)."""
    messages = list(example["messages"])
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last], str(messages[last]["content"])


def _last_user(messages: Sequence[Message]) -> str:
    users = [str(m["content"]) for m in messages if m["role"] == "user"]
    return users[-1][:SHOWN_CHARS] if users else ""


class PoolAnswerer:
    """Greedy answers from a ModelPool that runs on `loop` (the server's), asked from another
    thread: a lease and a generate, as /v1/chat/completions does, so users and the
    evaluation share the engines and its requests wait for room rather than fail."""

    def __init__(
        self, pool: ModelPool, loop: asyncio.AbstractEventLoop, *, wait_s: float = LEASE_WAIT_S
    ) -> None:
        self.pool = pool
        self.loop = loop
        self.wait_s = wait_s

    def answer(self, spec: ModelSpec, messages: Sequence[Message], max_tokens: int) -> str:
        coro = self.answer_async(spec, messages, max_tokens)
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def answer_async(
        self, spec: ModelSpec, messages: Sequence[Message], max_tokens: int
    ) -> str:
        """The answer, from inside the pool's loop."""
        lease = await self._lease(spec)
        try:
            engine = lease.engine
            rendered = await engine.render_chat(messages, None)
            limit = min(max_tokens, engine.max_context - len(rendered.tokens))
            if limit < 1:
                return ""  # the prompt fills the context: no answer, scored as wrong
            params = SamplingParams(max_tokens=limit, temperature=0.0)
            request = GenerationRequest(f"eval-{uuid.uuid4().hex}", tuple(rendered.tokens), params)
            parts: list[str] = []
            async for event in engine.generate(request, lease):
                if event.finish_reason is FinishReason.ERROR:
                    raise EngineDead(event.error or "the engine failed on an answer")
                parts.append(event.text)
            return "".join(parts)
        finally:
            lease.release()

    async def _lease(self, spec: ModelSpec) -> Lease:
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                return await self.pool.lease(spec, 1)
            except Overloaded:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


@contextmanager
def local_answerer(settings: EngineSettings) -> Iterator[PoolAnswerer]:
    """A PoolAnswerer over a ModelPool of its own, on an event loop in a thread of its own
    (for the CLI, without a server); the pool's engines are closed when the block ends."""
    from inhouse.engine.factory import build_engine

    pool = ModelPool(
        lambda spec: build_engine(spec, settings),
        budget_bytes=settings.memory_budget_mb * 1024 * 1024,
        keep_alive_s=settings.keep_alive_s,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="inhouse-eval", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(_start(pool), loop).result()
        yield PoolAnswerer(pool, loop)
    finally:
        asyncio.run_coroutine_threadsafe(pool.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def _start(pool: ModelPool) -> None:
    pool.start()  # its reaper task belongs to the running loop
