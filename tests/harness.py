"""Drives an EngineCore synchronously in the test's thread: submit, step until idle, read."""

from __future__ import annotations

from dataclasses import dataclass, field

from inhouse.engine.backend import ModelRunner
from inhouse.engine.core import EngineCore
from inhouse.engine.request import GenerationRequest, SamplingParams, TokenEvent
from inhouse.engine.scheduler import Scheduler


@dataclass
class Harness:
    runner: ModelRunner
    scheduler: Scheduler
    events: list[TokenEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.core = EngineCore(self.runner, self.scheduler, self.events.extend)

    def submit(self, rid: str, prompt: str, max_tokens: int = 8, **params: object) -> None:
        tokens = tuple(self.runner.tokenize(prompt, add_special=False, parse_special=True))
        sampling = SamplingParams(max_tokens=max_tokens, **params)  # type: ignore[arg-type]
        self.core.submit(GenerationRequest(rid, tokens, sampling))

    def run(self, max_steps: int = 10_000) -> None:
        for _ in range(max_steps):
            self.core.poll(block=False)
            if not self.scheduler.has_work():
                return
            self.core.step()
        raise AssertionError("the engine did not finish its work")

    def text(self, rid: str) -> str:
        return "".join(e.text for e in self.events if e.request_id == rid)

    def final(self, rid: str) -> TokenEvent:
        (event,) = [e for e in self.events if e.request_id == rid and e.finish_reason]
        return event
