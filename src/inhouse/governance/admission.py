"""One admitted request: counts what it generates and settles once, at its end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from inhouse.auth.policy import Principal
from inhouse.governance.budget import Budget
from inhouse.governance.settlement import Settlement
from inhouse.ledger.usage import Outcome, usage_row


class StreamEvent(Protocol):
    """What metering reads of a generated token or of a stream's end (the engine's
    TokenEvent has these)."""

    @property
    def request_id(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def finish_reason(self) -> object | None: ...

    @property
    def completion_tokens(self) -> int: ...

    @property
    def cached_tokens(self) -> int: ...


@dataclass
class Admission:
    """Tokens are counted per stream as they come; `done` settles the request exactly once."""

    principal: Principal
    ip: str | None
    endpoint: str
    model: str
    budget: Budget
    reservation: str | None
    settle: Callable[[Admission, Outcome], None]
    keep_text: bool = False  # the content log is on: keep the response text
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.perf_counter)
    prompt_tokens: int = 0
    generated: dict[str, int] = field(default_factory=dict)  # stream id -> tokens
    finished: set[str] = field(default_factory=set)
    cached_tokens: int = 0
    response: list[str] = field(default_factory=list)
    settled: bool = False

    def __post_init__(self) -> None:
        self.prompt_tokens = self.budget.prompt_tokens

    def set_prompt_tokens(self, tokens: int) -> None:
        """The real count, once known (embeddings are counted by their model)."""
        self.prompt_tokens = tokens

    def on_event(self, event: StreamEvent) -> None:
        rid = event.request_id
        if event.finish_reason is None:
            self.generated[rid] = self.generated.get(rid, 0) + 1
        else:
            self.generated[rid] = event.completion_tokens
            self.finished.add(rid)
            self.cached_tokens = max(self.cached_tokens, event.cached_tokens)
        if self.keep_text and event.text:
            self.response.append(event.text)

    def done(self, status: int) -> None:
        """The request ended with HTTP `status`: settle it (later calls do nothing)."""
        if self.settled:
            return
        self.settled = True
        if status != 200:
            label = f"error_{status}"
        else:
            label = "ok" if len(self.finished) >= self.budget.streams else "aborted"
        outcome = Outcome(
            self.prompt_tokens,
            sum(self.generated.values()),
            self.cached_tokens,
            (time.perf_counter() - self.started) * 1000,
            label,
        )
        self.settle(self, outcome)

    def settlement(self, outcome: Outcome) -> Settlement:
        """What the write-behind writes for this request, ended with `outcome`."""
        return Settlement(
            self.reservation,
            usage_row(self.principal, self.request_id, self.model, self.endpoint, outcome),
            self.principal.actor,
            self.ip,
            self.budget.prompt_text,
            "".join(self.response),
        )
