"""The events of a prepared request's choices, merged into one stream as they come."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from inhouse.engine.request import GenerationRequest, TokenEvent

from .prepare import Prepared


@dataclass(frozen=True)
class ChoiceEvent:
    index: int
    event: TokenEvent


async def choice_events(prepared: Prepared) -> AsyncIterator[ChoiceEvent]:
    """All choices' events as they come, under the prepared lease (no capacity check
    that could fail once a response has begun); cancelling the iteration aborts every
    choice. The lease is left to whoever ends the request."""
    engine, choices, lease = prepared.engine, prepared.choices, prepared.lease
    if len(choices) == 1:
        async with contextlib.aclosing(engine.generate(choices[0], lease)) as events:
            async for event in events:
                yield ChoiceEvent(0, event)
        return
    merged: asyncio.Queue[ChoiceEvent | BaseException] = asyncio.Queue()

    async def pump(index: int, request: GenerationRequest) -> None:
        try:
            async with contextlib.aclosing(engine.generate(request, lease)) as events:
                async for event in events:
                    merged.put_nowait(ChoiceEvent(index, event))
        except Exception as exc:
            merged.put_nowait(exc)

    tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(choices)]
    try:
        remaining = len(choices)
        while remaining:
            item = await merged.get()
            if isinstance(item, BaseException):
                raise item
            remaining -= item.event.finish_reason is not None
            yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
