"""The scheduler and the step loop, driven synchronously over the FakeRunner."""

from __future__ import annotations

import pytest

from inhouse.engine.request import FinishReason
from inhouse.engine.scheduler import Scheduler
from tests.fakes import FakeRunner
from tests.harness import Harness


def make(
    *,
    kv_cells: int = 4096,
    max_running: int = 16,
    n_batch: int = 512,
    cache_slots: int = 4,
    **runner_args: object,
) -> Harness:
    runner = FakeRunner(kv_cells=kv_cells, **runner_args)  # type: ignore[arg-type]
    scheduler = Scheduler(
        kv_cells=kv_cells, max_running=max_running, n_batch=n_batch, cache_slots=cache_slots
    )
    return Harness(runner, scheduler)


def test_a_request_generates_until_max_tokens() -> None:
    h = make()
    h.submit("a", "Hi", max_tokens=5)
    h.run()
    assert h.text("a") == "hello"
    final = h.final("a")
    assert final.finish_reason is FinishReason.LENGTH
    assert (final.prompt_tokens, final.completion_tokens) == (2, 5)


def test_end_of_generation_token_finishes_with_stop() -> None:
    h = make(end_after=3)
    h.submit("a", "Hi", max_tokens=50)
    h.run()
    assert h.text("a") == "hel"
    assert h.final("a").finish_reason is FinishReason.STOP


def test_running_sequences_share_one_batch_per_step() -> None:
    h = make()
    for i in range(8):
        h.submit(f"r{i}", f"prompt {i}", max_tokens=20)
    h.run()
    assert all(h.text(f"r{i}") == "hello world hello wo" for i in range(8))
    # 8 prompts in the first step, then one decode token of each sequence per step
    assert h.runner.step_chunks[1:19] == [8] * 18
    assert len(h.runner.step_sizes) == 20


def test_long_prompt_is_prefilled_in_chunks_without_stalling_decodes() -> None:
    h = make(n_batch=64)
    h.submit("short", "x", max_tokens=30)
    h.core.poll(block=False)
    h.core.step()
    h.submit("long", "y" * 1000, max_tokens=2)
    h.run()
    assert max(h.runner.step_sizes) <= 64
    assert h.text("short") == ("hello world " * 3)[:30]
    assert h.text("long") == "he"
    # the short stream got a token in every step while the long prompt was prefilled
    assert len(h.runner.step_sizes) == 30


def test_stop_string_ends_generation_and_is_not_returned() -> None:
    h = make()
    h.submit("a", "Hi", max_tokens=50, stop=("wor",))
    h.run()
    assert h.text("a") == "hello "
    assert h.final("a").finish_reason is FinishReason.STOP


def test_shared_prefix_is_reused_from_the_cache() -> None:
    h = make()
    system = "You are a helpful assistant. " * 4
    h.submit("first", system + "Question one?", max_tokens=4)
    h.run()
    computed_before = h.runner.computed_tokens
    h.submit("second", system + "Question two?", max_tokens=4)
    h.run()
    second = h.final("second")
    assert second.cached_tokens >= len(system)
    assert h.runner.computed_tokens - computed_before < len(system)
    assert h.text("second") == "hell"


def test_multi_turn_conversation_reuses_the_whole_previous_turn() -> None:
    h = make()
    h.submit("t1", "user: hi\n", max_tokens=6)
    h.run()
    turn2 = "user: hi\n" + h.text("t1") + "\nuser: more\n"
    h.submit("t2", turn2, max_tokens=6)
    h.run()
    assert h.final("t2").cached_tokens >= len("user: hi\n") + 5
    turn3 = turn2 + h.text("t2") + "\nuser: again\n"
    h.submit("t3", turn3, max_tokens=6)
    h.run()
    assert h.final("t3").cached_tokens >= len(turn2) + 5


def test_kv_pool_pressure_preempts_the_newest_and_everyone_still_finishes() -> None:
    h = make(kv_cells=300, cache_slots=0)
    for i in range(6):
        h.submit(f"r{i}", f"{i}" * 40, max_tokens=60)
    h.run()
    assert h.scheduler.num_preemptions > 0
    for i in range(6):
        assert h.text(f"r{i}") == ("hello world " * 5)[:60]
        assert h.final(f"r{i}").completion_tokens == 60
    assert h.runner.used_cells() == 0


def test_max_running_bounds_the_batch_and_the_rest_wait() -> None:
    h = make(max_running=4)
    for i in range(10):
        h.submit(f"r{i}", "p", max_tokens=5)
    h.run()
    assert max(h.runner.step_chunks) <= 4
    assert all(h.final(f"r{i}").completion_tokens == 5 for i in range(10))


def test_abort_frees_the_sequence_at_the_next_step() -> None:
    h = make(cache_slots=0)
    h.submit("a", "Hi", max_tokens=1000)
    h.submit("b", "Hi", max_tokens=3)
    for _ in range(3):
        h.core.poll(block=False)
        h.core.step()
    h.core.abort("a")
    h.run()
    assert h.final("a").finish_reason is FinishReason.ABORT
    assert h.final("b").finish_reason is FinishReason.LENGTH
    assert not h.scheduler.running and h.runner.used_cells() == 0
    assert h.runner.live_samplers == 0


def test_aborting_a_waiting_request_removes_it() -> None:
    h = make(max_running=1)
    h.submit("a", "Hi", max_tokens=3)
    h.submit("b", "Hi", max_tokens=3)
    h.core.poll(block=False)
    h.core.step()
    h.core.abort("b")
    h.run()
    assert h.final("b").finish_reason is FinishReason.ABORT
    assert h.final("b").completion_tokens == 0


def test_logprobs_come_with_each_token_when_asked() -> None:
    h = make()
    h.submit("a", "Hi", max_tokens=3, top_logprobs=0)
    h.run()
    logprobs = [lp for e in h.events for lp in e.logprobs]
    assert [lp.token for lp in logprobs] == ["h", "e", "l"]


@pytest.mark.parametrize("script", ["héllo wörld €".encode(), "日本語".encode()])
def test_multibyte_characters_split_across_tokens_are_never_sent_broken(script: bytes) -> None:
    h = make(script=script)
    h.submit("a", "Hi", max_tokens=len(script))
    h.run()
    pieces = [e.text for e in h.events]
    assert "".join(pieces) == script.decode()
    assert all("\ufffd" not in p for p in pieces)


def test_a_repeated_prompt_reuses_all_of_it_even_after_forking() -> None:
    h = make()
    system = "You are a helpful assistant. "
    h.submit("a", system + "Question A?", max_tokens=4)
    h.run()
    h.submit("b", system + "Question B?", max_tokens=4)
    h.run()
    h.submit("b-again", system + "Question B?", max_tokens=4)
    h.run()
    again = h.final("b-again")
    assert again.cached_tokens == again.prompt_tokens - 1
    assert h.text("b-again") == h.text("b")


def test_the_cache_accounts_for_every_kv_cell_under_random_load() -> None:
    import random

    rng = random.Random(7)
    h = make(kv_cells=600, cache_slots=4, max_running=6, n_batch=64)
    prefixes = ["sys one. ", "sys two is longer. ", ""]
    for i in range(60):
        prompt = rng.choice(prefixes) + rng.choice(["q", "question ", "another q "]) * rng.randint(
            1, 4
        )
        h.submit(f"r{i}", prompt, max_tokens=rng.randint(1, 40))
        for _ in range(rng.randint(0, 6)):
            h.core.poll(block=False)
            if h.scheduler.has_work():
                h.core.step()
    h.run()
    for i in range(60):
        final = h.final(f"r{i}")
        assert h.text(f"r{i}") == ("hello world " * 4)[: final.completion_tokens]
    # what the scheduler believes is in use is exactly what the KV memory holds
    assert h.scheduler.used_cells == h.runner.used_cells()
    assert all(
        entry.refs == sum(1 for e in h.scheduler.cache if e.parent is entry)
        for entry in h.scheduler.cache
    )
