"""The unified layout's prefix cache, bounded by tokens and evicted least recently used."""

from __future__ import annotations

from inhouse.engine.scheduler import Scheduler
from tests.fakes import FakeRunner
from tests.harness import Harness


def make(cache_tokens: int) -> Harness:
    runner = FakeRunner(kv_cells=4096)
    scheduler = Scheduler(
        kv_cells=4096, max_running=4, n_batch=512, cache_slots=16, cache_tokens=cache_tokens
    )
    return Harness(runner, scheduler)


def ask(h: Harness, rid: str, prompt: str) -> int:
    """Run one request alone; the number of its prompt tokens served from the cache."""
    h.submit(rid, prompt, max_tokens=2)
    h.run()
    return h.final(rid).cached_tokens


def test_the_cache_keeps_at_most_its_token_budget_dropping_the_oldest() -> None:
    h = make(cache_tokens=250)
    for name in "abc":
        ask(h, name, name * 100)
    assert sum(e.own_cells for e in h.scheduler.cache) <= 250
    assert ask(h, "c-again", "c" * 100) == 99
    assert ask(h, "a-again", "a" * 100) == 0  # the least recently used went first


def test_a_reused_entry_is_kept_over_an_older_unused_one() -> None:
    h = make(cache_tokens=250)
    ask(h, "a", "a" * 100)
    ask(h, "b", "b" * 100)
    assert ask(h, "a-again", "a" * 100) == 99  # a is now the most recently used
    ask(h, "c", "c" * 100)  # over the budget: b, the least recently used, goes
    assert ask(h, "a-third", "a" * 100) == 99
    assert ask(h, "b-again", "b" * 100) == 0


def test_without_a_token_budget_the_slots_bound_the_cache() -> None:
    h = make(cache_tokens=0)
    for name in "abcd":
        ask(h, name, name * 100)
    assert ask(h, "a-again", "a" * 100) == 99
