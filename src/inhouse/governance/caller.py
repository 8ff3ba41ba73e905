"""Who sent a request and from where: all that governance needs of an HTTP request."""

from __future__ import annotations

from dataclasses import dataclass

from inhouse.auth.policy import Principal


@dataclass(frozen=True)
class Caller:
    principal: Principal
    ip: str | None  # the socket's peer; None when unknown (tests, local calls)
