"""The store step of a chat completion whose caller opted in (`store: true`, or the setting
`tuning.keep_feedback_text`): choice 0's text is gathered as its events pass and, when the
generation ends however it ends, queued with the prompt as sent to be written behind the
response. Keeping never delays or fails the answer: a failure is logged."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from inhouse.auth.policy import Principal
from inhouse.conversations.stored import CompletionKeeper, KeptCompletion
from inhouse.engine.request import TokenEvent

from .prepare import Prepared
from .requests import ChatCompletionRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeepAs:
    """Keep the completion under the response's `id` and `created` time."""

    completion_id: str
    created: int


class KeepingWatch:
    """Watches a generation's events; at its end, queues what choice 0 produced."""

    def __init__(
        self,
        keeper: CompletionKeeper,
        keep: KeepAs,
        principal: Principal,
        body: ChatCompletionRequest,
        prepared: Prepared,
    ) -> None:
        self.keeper = keeper
        self.keep = keep
        self.principal = principal
        self.body = body
        self.request_id = prepared.choices[0].request_id  # choice 0 only, whatever `n`
        self.parts: list[str] = []
        self.finish_reason: str | None = None

    def on_event(self, event: TokenEvent) -> None:
        if event.request_id != self.request_id:
            return
        self.parts.append(event.text)
        if event.finish_reason is not None:
            self.finish_reason = event.finish_reason.value

    def done(self, status: int) -> None:
        """Queue the completion (what was produced, if the client left first)."""
        try:
            self.keeper.keep(self._kept())
        except Exception:
            log.exception("completion %s could not be kept", self.keep.completion_id)

    def _kept(self) -> KeptCompletion:
        user_id = self.principal.user_id
        if user_id is None:  # checked before the watch is made; here for the type
            raise ValueError("a kept completion belongs to a user")
        messages: list[dict[str, Any]] = [
            m.model_dump(mode="json", exclude_none=True) for m in self.body.messages
        ]
        return KeptCompletion(
            completion_id=self.keep.completion_id,
            user_id=user_id,
            key_id=self.principal.key_id,
            model=self.body.model,
            messages=messages,
            answer="".join(self.parts),
            finish_reason=self.finish_reason,
            metadata=self.body.metadata,
            created_at=float(self.keep.created),
        )
