"""Held-out loss through llama.cpp (engine.scoring) on the real default model: the tokens it
scores, the numbers it gives (checked against llama.cpp's logits computed another way, so an
off-by-one position fails), adapters applied as serving applies them, and truncation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from llama_cpp import Llama

from inhouse.engine import scoring
from inhouse.engine.pool import ModelSpec
from inhouse.engine.scoring import Scored, ScoringRunner, Tokenized, score_examples
from inhouse.errors import InvalidRequest
from inhouse.models.default import DefaultModelMissing, default_model_path
from inhouse.tuning.lora_check import random_lora
from inhouse.tuning.lora_export import LoraConfig, export_lora
from tests.conftest import need

Logits = npt.NDArray[np.float32]

CONFIG = LoraConfig(rank=4, alpha=8.0, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"))
QUESTION = "What is the capital of France?"
NOISE = "Zebra quantum toaster violet marmalade."


def chat(answer: str, question: str = QUESTION) -> dict[str, object]:
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }


@pytest.fixture(scope="module")
def base() -> ModelSpec:
    try:
        return ModelSpec("smollm2", default_model_path())
    except DefaultModelMissing as exc:
        need(False, str(exc))
        raise


@pytest.fixture(scope="module")
def runner(base: ModelSpec) -> Iterator[ScoringRunner]:
    scorer = ScoringRunner(base, max_length=128, n_threads=2)
    yield scorer
    scorer.close()


@pytest.fixture(scope="module")
def adapter(base: ModelSpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    lora = random_lora(base.path, (0, 15, 29), CONFIG, seed=5)
    return export_lora(lora, CONFIG, base.path, tmp_path_factory.mktemp("lora") / "a.gguf")


def llama_logits(path: Path, tokens: Sequence[int], adapter: Path | None = None) -> Logits:
    """Logits at every position from llama-cpp-python's own Llama class, with flash
    attention as serving's contexts have it (llama.cpp's default on CPU)."""
    model = Llama(
        str(path),
        lora_path=None if adapter is None else str(adapter),
        n_ctx=256,
        n_threads=2,
        logits_all=True,
        flash_attn=True,
        verbose=False,
    )
    try:
        model.eval(list(tokens))
        return np.array(model.scores[: len(tokens)], dtype=np.float32)
    finally:
        model.close()


def hand_nll(logits: Logits, tokens: Tokenized, shift: int = 1) -> float:
    """The NLL of each scored token from the logits `shift` positions before it."""
    total = 0.0
    for j, scored in enumerate(tokens.scored):
        if scored:
            row = logits[j - shift].astype(np.float64)
            total += float(
                np.log(np.exp(row - row.max()).sum()) + row.max() - row[tokens.tokens[j]]
            )
    return total


def greedy(path: Path, tokens: list[int], n: int) -> list[int]:
    """`n` tokens chosen by argmax after `tokens`, by llama-cpp-python's own Llama."""
    model = Llama(
        str(path), n_ctx=256, n_threads=2, logits_all=True, flash_attn=True, verbose=False
    )
    try:
        out: list[int] = []
        model.eval(tokens)
        for _ in range(n):
            best = int(np.argmax(model.scores[model.n_tokens - 1]))
            if model.token_eos() == best or best == 2:
                break
            out.append(best)
            model.eval([best])
        return out
    finally:
        model.close()


def context_of(runner: ScoringRunner, example: dict[str, object]) -> list[int]:
    """The tokens before the first scored one."""
    tokens = runner.tokens_of(example)
    return list(tokens.tokens[: tokens.scored.index(True)])


def test_the_models_own_greedy_answer_is_likelier_than_noise(
    runner: ScoringRunner, base: ModelSpec
) -> None:
    question = "What is 2+2?"  # answered in about 10 tokens, then <|im_end|>
    answer_tokens = greedy(base.path, context_of(runner, chat("x", question)), 24)
    answer = b"".join(runner.token_bytes(t) for t in answer_tokens).decode()
    assert answer.strip()
    own = runner.score(runner.tokens_of(chat(answer, question)))
    noise = runner.score(runner.tokens_of(chat(NOISE, question)))
    assert own.n_tokens > 1 and noise.n_tokens > 1
    own_loss, noise_loss = own.nll_sum / own.n_tokens, noise.nll_sum / noise.n_tokens
    assert own_loss < 1.5 < 4.0 < noise_loss, (answer, own_loss, noise_loss)


def test_loss_is_llama_cpp_nll_at_the_position_before_each_target(
    runner: ScoringRunner, base: ModelSpec, adapter: Path
) -> None:
    """Every scored token's NLL from the full logits of a separate llama.cpp run; the logits
    of the scored position itself (an off-by-one) give a clearly different sum."""
    example = chat("The capital of France is Paris.")
    tokens = runner.tokens_of(example)
    mine = runner.score(tokens)
    logits = llama_logits(base.path, tokens.tokens)
    assert mine.n_tokens == sum(tokens.scored) == 8
    assert mine.nll_sum == pytest.approx(hand_nll(logits, tokens), rel=2e-3, abs=2e-3)
    assert abs(hand_nll(logits, tokens, shift=0) - mine.nll_sum) > 10.0
    tuned = ModelSpec("tuned", base.path, ((adapter, 1.0),))
    [with_adapter] = score_examples(tuned, [example], max_length=128, n_threads=2)
    expected = hand_nll(llama_logits(base.path, tokens.tokens, adapter), tokens)
    assert with_adapter.nll_sum == pytest.approx(expected, rel=2e-3, abs=2e-3)


def test_examples_longer_than_one_decode_are_scored_in_chunks(
    base: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 5 tokens: positions and logits rows stay right across chunk boundaries."""
    monkeypatch.setattr(scoring, "MAX_CHUNK", 5)
    example = {"text": "The quick brown fox jumps over the lazy dog. It was a sunny day."}
    with scoring.scoring_runner(base, max_length=64, n_threads=2) as small:
        assert small.chunk == 5
        tokens = small.tokens_of(example)
        mine = small.score(tokens)
    assert len(tokens.tokens) > 12
    expected = hand_nll(llama_logits(base.path, tokens.tokens), tokens)
    assert mine.nll_sum == pytest.approx(expected, rel=2e-3, abs=2e-3)


def test_an_adapter_changes_the_loss_and_the_base_is_repeatable(
    base: ModelSpec, adapter: Path
) -> None:
    examples: list[dict[str, object]] = [chat("Paris."), {"text": "Hello world, a test."}]
    plain = score_examples(base, examples, max_length=64, n_threads=2)
    again = score_examples(base, examples, max_length=64, n_threads=2)
    tuned = score_examples(
        ModelSpec("t", base.path, ((adapter, 1.0),)), examples, max_length=64, n_threads=2
    )
    assert plain == again
    assert [s.n_tokens for s in tuned] == [s.n_tokens for s in plain]
    assert all(abs(t.nll_sum - p.nll_sum) > 0.1 for t, p in zip(tuned, plain, strict=True)), (
        plain,
        tuned,
    )


def test_scored_tokens_are_every_assistant_turn_with_its_end_of_turn(
    runner: ScoringRunner,
) -> None:
    example = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "2+2? <|im_end|>"},
            {"role": "assistant", "content": "4"},
        ]
    }
    tokens = runner.tokens_of(example)
    scored = [t for t, s in zip(tokens.tokens, tokens.scored, strict=True) if s]
    im_end = runner.tokenize("<|im_end|>", add_special=False, parse_special=True)
    assert scored == [
        *runner.tokenize("Hello!", add_special=False, parse_special=False),
        *im_end,
        *runner.tokenize("4", add_special=False, parse_special=False),
        *im_end,
    ]
    # the user's "<|im_end|>" text stays plain text, as serving tokenizes it
    assert tokens.tokens.count(im_end[0]) == 5
    text = runner.tokens_of({"text": "one two three"})
    assert text.scored[0] is False and all(text.scored[1:])
    assert text.tokens[-1] == im_end[0]  # SmolLM2's end-of-sequence token


def test_examples_are_truncated_to_max_length(base: ModelSpec) -> None:
    example = chat("The capital of France is Paris.")
    with scoring.scoring_runner(base, max_length=40, n_threads=2) as short:
        tokens = short.tokens_of(example)
        first = tokens.scored.index(True)
        assert first < 40 < len(tokens.tokens)
        assert short.score(tokens).n_tokens == 40 - first
    with scoring.scoring_runner(base, max_length=first, n_threads=2) as shorter:
        assert shorter.score(tokens) == Scored(0.0, 0)


def test_unusable_input_is_refused(runner: ScoringRunner, base: ModelSpec) -> None:
    with pytest.raises(InvalidRequest, match="no assistant message"):
        runner.tokens_of({"messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(InvalidRequest, match="max_length"):
        ScoringRunner(base, max_length=1)
