"""What follows a request's events: the metrics timer, the usage meter; both see the end.

A generation also holds a lease on its engine from preparation on; `Ending` releases it with
the watches' end, exactly once, however the request ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from starlette.requests import Request

from inhouse.engine.protocol import Lease
from inhouse.engine.request import TokenEvent

T = TypeVar("T")


class RequestWatch(Protocol):
    def on_event(self, event: TokenEvent) -> None: ...

    def done(self, status: int) -> None: ...


class Watches:
    """Several watches as one."""

    def __init__(self, *watches: RequestWatch) -> None:
        self.watches = watches

    def on_event(self, event: TokenEvent) -> None:
        for watch in self.watches:
            watch.on_event(event)

    def done(self, status: int) -> None:
        for watch in self.watches:
            watch.done(status)


class Ending:
    """A generation's watch and engine lease: the first `done` ends both, later ones nothing."""

    def __init__(self, watch: RequestWatch, lease: Lease) -> None:
        self.watch = watch
        self.lease = lease
        self.ended = False

    def on_event(self, event: TokenEvent) -> None:
        self.watch.on_event(event)

    def done(self, status: int) -> None:
        if self.ended:
            return
        self.ended = True
        try:
            self.watch.done(status)
        finally:
            self.lease.release()


async def until_disconnected(request: Request) -> None:
    """Return once the client closes the connection (call after the body has been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T | None:
    """The result of `work`, or None, with `work` cancelled, when the client goes away first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(until_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()  # the client is gone, or this request was cancelled itself
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(task, watcher, return_exceptions=True)
    if task.cancelled():
        return None
    return task.result()
