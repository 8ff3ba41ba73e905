"""The per-stream KV layout (StreamScheduler) over the FakeRunner's checked stream memory."""

from __future__ import annotations

from inhouse.config import EngineSettings
from inhouse.engine.factory import make_scheduler, stream_cells
from inhouse.engine.request import FinishReason
from inhouse.engine.streams import StreamScheduler
from tests.fakes import FakeRunner
from tests.harness import Harness

SCRIPT = "hello world " * 20


def make(*, streams: int = 16, stream_cells: int = 1024, n_batch: int = 512) -> Harness:
    runner = FakeRunner(kv_cells=streams * stream_cells, stream_cells=stream_cells)
    scheduler = StreamScheduler(
        stream_cells=stream_cells, n_streams=streams, max_running=streams, n_batch=n_batch
    )
    return Harness(runner, scheduler)


def prompt(i: int, length: int = 900) -> str:
    """A distinct prompt: its first characters differ from every other one's."""
    return f"{i:03d}" + "x" * (length - 3)


def test_sixteen_long_prompts_at_once_all_finish_without_preemption() -> None:
    h = make(n_batch=256)
    for i in range(16):
        h.submit(f"r{i}", prompt(i), max_tokens=64)
    h.run()
    for i in range(16):
        assert h.final(f"r{i}").finish_reason is FinishReason.LENGTH
        assert h.text(f"r{i}") == SCRIPT[:64]
    assert h.scheduler.num_preemptions == 0
    # each step decodes the running sequences together with what fits of the prompts
    assert max(h.runner.step_sizes) <= 256


def test_more_long_prompts_than_streams_wait_in_arrival_order() -> None:
    h = make(streams=4, stream_cells=1024, n_batch=256)
    for i in range(10):
        h.submit(f"r{i}", prompt(i), max_tokens=8)
    h.run()
    finished = [e.request_id for e in h.events if e.finish_reason is not None]
    assert finished == [f"r{i}" for i in range(10)]
    assert max(h.runner.step_chunks) <= 4
    assert h.scheduler.num_preemptions == 0


def test_requests_arriving_together_compute_a_shared_prefix_once() -> None:
    h = make(n_batch=256)
    system = "s" * 600
    for i in range(8):
        h.submit(f"r{i}", system + f"q{i}?", max_tokens=4)
    h.run()
    for i in range(8):
        assert h.text(f"r{i}") == "hell"
    # "s" * 600 + "q" is shared; the last two tokens of each prompt are its own
    assert [h.final(f"r{i}").cached_tokens for i in range(8)] == [0] + [601] * 7
    # the first prompt whole, then 2 tokens per other prompt, and 3 decodes per request
    assert h.runner.computed_tokens == 603 + 7 * 2 + 8 * 3


def test_a_prompt_waiting_for_a_shared_prefill_does_not_hold_up_the_others() -> None:
    h = make(n_batch=512)
    h.submit("a", "p" * 300 + "1", max_tokens=2)
    h.submit("b", "p" * 300 + "2", max_tokens=2)
    h.submit("c", "other", max_tokens=2)
    h.core.poll(block=False)
    h.core.step()
    assert {seq.request_id for seq in h.scheduler.running} == {"a", "c"}
    h.run()
    assert h.final("b").cached_tokens == 300
    assert [h.text(r) for r in "abc"] == ["he"] * 3


def test_a_finished_stream_is_continued_by_the_next_prompt_sharing_its_prefix() -> None:
    h = make(streams=2)
    system = "You are a helpful assistant. " * 10
    h.submit("a", system + "Question A?", max_tokens=4)
    h.submit("b", "unrelated", max_tokens=4)
    h.run()
    computed = h.runner.computed_tokens
    h.submit("c", system + "Question C?", max_tokens=4)
    h.run()
    assert h.final("c").cached_tokens == len(system) + len("Question ")
    assert h.runner.computed_tokens - computed == len("C?") + 3
    assert h.text("c") == "hell"


def test_a_cached_prefix_is_copied_into_a_free_stream_and_stays_cached() -> None:
    h = make(streams=4)
    system = "Grounding passages. " * 20
    h.submit("a", system + "first", max_tokens=2)
    h.run()
    for name in ("b", "c"):
        h.submit(name, system + name, max_tokens=2)
        h.run()
        assert h.final(name).cached_tokens == len(system)
    assert h.runner.copies == 2
    assert len(h.scheduler.cache) == 3  # the first entry is still there for the next one


def test_the_same_prompt_again_gets_the_same_answer_from_the_cache() -> None:
    h = make(streams=2)
    h.submit("a", "Tell me a story.", max_tokens=12)
    h.run()
    h.submit("again", "Tell me a story.", max_tokens=12)
    h.run()
    again = h.final("again")
    assert again.cached_tokens == again.prompt_tokens - 1
    assert h.text("again") == h.text("a")


def test_random_load_keeps_every_stream_consistent() -> None:
    import random

    rng = random.Random(11)
    h = make(streams=4, stream_cells=256, n_batch=64)
    prefixes = ["system one. " * 4, "system two is longer. " * 3, ""]
    for i in range(60):
        text = rng.choice(prefixes) + rng.choice(["q", "question ", "another q "]) * rng.randint(
            1, 4
        )
        h.submit(f"r{i}", text, max_tokens=rng.randint(1, 40))
        for _ in range(rng.randint(0, 6)):
            h.core.poll(block=False)
            if h.scheduler.has_work():
                h.core.step()
    h.run()
    for i in range(60):
        final = h.final(f"r{i}")
        assert h.text(f"r{i}") == SCRIPT[: final.completion_tokens]
    assert h.scheduler.num_preemptions == 0
    # every idle stream holds exactly the tokens its cache entry says
    for entry in h.scheduler.cache:
        assert tuple(t for _, t in h.runner.kv[entry.slot]) == entry.tokens


def test_aborting_a_prefill_that_others_wait_for_lets_them_compute_it() -> None:
    h = make(n_batch=64)
    system = "p" * 300
    h.submit("first", system + "1", max_tokens=4)
    h.submit("second", system + "2", max_tokens=4)
    h.core.poll(block=False)
    h.core.step()
    h.core.abort("first")
    h.run()
    assert h.final("first").finish_reason is FinishReason.ABORT
    # what the aborted prefill had computed is reused, the rest computed once
    assert h.final("second").cached_tokens == 64
    assert h.text("second") == "hell"


def test_by_default_each_running_request_gets_a_stream_that_bounds_its_context() -> None:
    settings = EngineSettings()
    scheduler = make_scheduler(settings)
    assert isinstance(scheduler, StreamScheduler)
    assert scheduler.n_slots == settings.max_running
    assert scheduler.kv_cells == settings.kv_cells // settings.max_running == 2048
    assert stream_cells(2048, 16) == 256  # llama.cpp rounds each stream up to 256 cells
    unified = make_scheduler(EngineSettings(kv_layout="unified", prefix_cache_tokens=4096))
    assert not isinstance(unified, StreamScheduler)
    assert (unified.kv_cells, unified.cache_tokens) == (settings.kv_cells, 4096)
