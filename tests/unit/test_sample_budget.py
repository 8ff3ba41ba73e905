"""A sequence whose sampling runs over the time budget ends alone (issue 13), over the fake
runner: the core ends it with an error event and the others in the same steps go on."""

from __future__ import annotations

from dataclasses import dataclass

from inhouse.config import EngineSettings
from inhouse.engine.backend import Sampled
from inhouse.engine.request import FinishReason
from inhouse.engine.sampler import sampling_overrun
from inhouse.engine.scheduler import Scheduler
from tests.fakes import FakeRunner, FakeSampler
from tests.harness import Harness

SLOW_SEED = 7


@dataclass
class SlowSamplingRunner(FakeRunner):
    """The fake model, where sequences seeded SLOW_SEED take 0.8 s per token to sample."""

    budget_s: float = 0.5

    def _sample(self, sampler: object) -> Sampled:
        assert isinstance(sampler, FakeSampler)
        sampled = super()._sample(sampler)
        slow = sampler.params.seed == SLOW_SEED
        error = sampling_overrun(0.8 if slow else 0.001, self.budget_s)
        return Sampled(sampled.token, sampled.logprob, error)


def test_an_over_budget_sequence_ends_with_an_error_and_the_others_finish() -> None:
    runner = SlowSamplingRunner(script=b"abcdefgh")
    h = Harness(runner, Scheduler(kv_cells=4096, max_running=4, n_batch=64, cache_slots=0))
    h.submit("a", "one", max_tokens=6)
    h.submit("slow", "two", max_tokens=6, seed=SLOW_SEED)
    h.submit("b", "three", max_tokens=6)
    h.run()
    slow = h.final("slow")
    assert slow.finish_reason is FinishReason.ERROR
    assert slow.error is not None and "engine.max_sample_ms" in slow.error
    assert slow.completion_tokens == 1
    for rid in ("a", "b"):
        assert h.final(rid).finish_reason is FinishReason.LENGTH
        assert h.text(rid) == "abcdef"
    assert runner.live_samplers == 0


def test_the_budget_is_a_bounded_setting_large_enough_for_normal_sampling() -> None:
    assert EngineSettings().max_sample_ms == 500.0
    assert sampling_overrun(0.4, 0.5) is None
    message = sampling_overrun(0.7, 0.5)
    assert message is not None and "700 ms" in message and "500 ms" in message
