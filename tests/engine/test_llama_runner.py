"""The real llama.cpp runner on the real default model, greedy (temperature 0)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from inhouse.engine.runner import LlamaRunner
from inhouse.engine.scheduler import Scheduler
from inhouse.models.default import DefaultModelMissing, default_model_path
from tests.conftest import need
from tests.harness import Harness

CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def runner() -> Iterator[LlamaRunner]:
    try:
        path = default_model_path()
    except DefaultModelMissing as exc:
        need(False, str(exc))
        raise
    llama = LlamaRunner(path, "smollm2", kv_cells=4096, n_batch=256, n_seq_max=24, n_threads=2)
    yield llama
    llama.close()


def harness(runner: LlamaRunner, *, kv_cells: int = 4096, cache_slots: int = 8) -> Harness:
    # every test starts from an empty KV pool
    runner.execute(_clear_all())
    scheduler = Scheduler(kv_cells=kv_cells, max_running=16, n_batch=256, cache_slots=cache_slots)
    return Harness(runner, scheduler)


def _clear_all():  # type: ignore[no-untyped-def]
    from inhouse.engine.scheduler import StepPlan

    return StepPlan(clear_slots=list(range(24)))


def test_model_metadata_is_read_from_the_gguf(runner: LlamaRunner) -> None:
    info = runner.info
    assert info.n_ctx_train == 8192
    assert 100_000_000 < info.n_params < 200_000_000
    assert info.chat_template and "<|im_start|>" in info.chat_template


def test_greedy_output_matches_llama_cpp_pythons_own_high_level_api(
    runner: LlamaRunner,
) -> None:
    from llama_cpp import Llama

    prompt = CHAT.format("What color is the sky?")
    reference = Llama(runner.info.path, n_ctx=512, n_threads=2, verbose=False)
    expected = reference.create_completion(prompt, max_tokens=16, temperature=0.0)
    reference.close()
    h = harness(runner)
    h.submit("a", prompt, max_tokens=16, temperature=0.0)
    h.run()
    assert h.text("a") == expected["choices"][0]["text"]  # type: ignore[index]


def test_batched_sequences_each_answer_their_own_question(runner: LlamaRunner) -> None:
    questions = {"What is 2+2?": "4", "What color is the sky?": "blue", "Say hi.": "Hello"}
    h = harness(runner, cache_slots=0)
    for i, q in enumerate(questions):
        h.submit(f"q{i}", CHAT.format(q), max_tokens=16, temperature=0.0)
    h.run()
    for i, expected in enumerate(questions.values()):
        assert expected in h.text(f"q{i}")


def test_a_cached_prefix_gives_the_same_answer_without_recomputing(runner: LlamaRunner) -> None:
    prompt = CHAT.format("Tell me about the moon.")
    h = harness(runner)
    h.submit("cold", prompt, max_tokens=16, temperature=0.0)
    h.run()
    h.submit("warm", prompt, max_tokens=16, temperature=0.0)
    h.run()
    assert h.final("cold").cached_tokens == 0
    assert h.final("warm").cached_tokens == h.final("warm").prompt_tokens - 1
    assert h.text("warm") == h.text("cold")


def test_kv_pressure_preempts_and_recomputes_and_every_answer_completes(
    runner: LlamaRunner,
) -> None:
    prompts = [CHAT.format(f"Count from {i} to {i + 30}.") for i in range(6)]
    roomy = harness(runner, cache_slots=0)
    for i, p in enumerate(prompts):
        roomy.submit(f"r{i}", p, max_tokens=48, temperature=0.0)
    roomy.run()
    tight = harness(runner, kv_cells=256, cache_slots=0)
    for i, p in enumerate(prompts):
        tight.submit(f"r{i}", p, max_tokens=48, temperature=0.0)
    tight.run()
    assert tight.scheduler.num_preemptions > 0
    for i in range(len(prompts)):
        assert tight.final(f"r{i}").completion_tokens == roomy.final(f"r{i}").completion_tokens
        # recomputation batches differently, so late tokens may drift in the last bits of
        # floating point; the answer itself is the same one
        assert tight.text(f"r{i}")[:40] == roomy.text(f"r{i}")[:40]


def test_logprobs_are_a_distribution(runner: LlamaRunner) -> None:
    h = harness(runner)
    h.submit("a", CHAT.format("Hi"), max_tokens=4, temperature=0.0, top_logprobs=5)
    h.run()
    logprobs = [lp for e in h.events for lp in e.logprobs]
    assert len(logprobs) == h.final("a").completion_tokens
    for lp in logprobs:
        tops = [t.logprob for t in lp.top]
        assert tops == sorted(tops, reverse=True)
        assert lp.logprob == pytest.approx(tops[0], abs=1e-5)
        assert sum(math.exp(t) for t in tops) <= 1.0 + 1e-6


def test_seeded_sampling_is_reproducible(runner: LlamaRunner) -> None:
    texts = []
    for _ in range(2):
        h = harness(runner)
        h.submit("s", CHAT.format("Write a poem."), max_tokens=16, temperature=1.0, seed=42)
        h.run()
        texts.append(h.text("s"))
    assert texts[0] == texts[1]


def test_multibyte_text_round_trips_through_tokens(runner: LlamaRunner) -> None:
    text = "naïve café — 日本語 🙂"
    tokens = runner.tokenize(text, add_special=False, parse_special=True)
    assert b"".join(runner.token_bytes(t) for t in tokens).decode() == text


# ----- one KV stream per sequence (kv_unified = false) -----------------------------------


@pytest.fixture(scope="module")
def stream_runner() -> Iterator[LlamaRunner]:
    try:
        path = default_model_path()
    except DefaultModelMissing as exc:
        need(False, str(exc))
        raise
    llama = LlamaRunner(
        path, "smollm2", kv_cells=4 * 1024, n_batch=256, n_seq_max=4, n_threads=2, kv_unified=False
    )
    yield llama
    llama.close()


def stream_harness(runner: LlamaRunner) -> Harness:
    from inhouse.engine.scheduler import StepPlan
    from inhouse.engine.streams import StreamScheduler

    runner.execute(StepPlan(clear_slots=list(range(4))))
    scheduler = StreamScheduler(stream_cells=1024, n_streams=4, max_running=4, n_batch=256)
    return Harness(runner, scheduler)


def test_streams_answer_exactly_as_the_unified_pool_does(
    runner: LlamaRunner, stream_runner: LlamaRunner
) -> None:
    questions = ["What is 2+2?", "What color is the sky?", "Say hi.", "Name a fruit."]
    unified = harness(runner, cache_slots=0)
    streams = stream_harness(stream_runner)
    for h in (unified, streams):
        for i, q in enumerate(questions):
            h.submit(f"q{i}", CHAT.format(q), max_tokens=24, temperature=0.0)
        h.run()
    for i in range(len(questions)):
        # the attention runs over other shapes (one stream vs the whole pool), so late tokens
        # may drift in the last bits of floating point; the answer itself is the same one
        assert streams.text(f"q{i}")[:40] == unified.text(f"q{i}")[:40]


def test_streams_give_each_answer_alone_or_together(stream_runner: LlamaRunner) -> None:
    questions = ["What is the moon?", "Why do cats purr?", "Count to five."]
    together = stream_harness(stream_runner)
    for i, q in enumerate(questions):
        together.submit(f"q{i}", CHAT.format(q), max_tokens=24, temperature=0.0)
    together.run()
    for i, q in enumerate(questions):
        alone = stream_harness(stream_runner)
        alone.submit("a", CHAT.format(q), max_tokens=24, temperature=0.0)
        alone.run()
        assert together.text(f"q{i}") == alone.text("a")


def test_a_shared_system_prompt_is_copied_across_streams_with_the_same_answers(
    stream_runner: LlamaRunner,
) -> None:
    system = "<|im_start|>system\n" + "You answer briefly and precisely. " * 20 + "<|im_end|>\n"
    questions = ["What is 2+2?", "What color is grass?", "Say hi."]
    prompts = [system + CHAT.format(q) for q in questions]
    expected = []
    for p in prompts:
        alone = stream_harness(stream_runner)
        alone.submit("a", p, max_tokens=16, temperature=0.0)
        alone.run()
        expected.append(alone.text("a"))
    # all at once: the later two wait for the first one's prefill and copy its stream
    together = stream_harness(stream_runner)
    for i, p in enumerate(prompts):
        together.submit(f"q{i}", p, max_tokens=16, temperature=0.0)
    together.run()
    # the shared cells were computed in other batches than alone, so late tokens may drift
    # in the last bits of floating point; a wrong copy would answer nonsense from the start
    assert [together.text(f"q{i}")[:40] for i in range(3)] == [e[:40] for e in expected]
    assert together.final("q1").cached_tokens > 100
    # then from idle streams: continued in place (the tail trimmed) or copied
    answers = [together.text(f"q{i}") for i in range(3)]
    for i, p in enumerate(prompts):
        together.submit(f"again{i}", p, max_tokens=16, temperature=0.0)
    together.run()
    assert [together.text(f"again{i}") for i in range(3)] == answers
    assert all(together.final(f"again{i}").cached_tokens > 100 for i in range(3))
