"""What follows a request's events: the metrics timer, the usage meter; both see the end."""

from __future__ import annotations

from typing import Protocol

from inhouse.engine.request import TokenEvent


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
