"""ASGI middleware: a request body limit, and 503 while the server drains for shutdown."""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inhouse.api.errors import error_response
from inhouse.errors import Overloaded, PayloadTooLarge


def _too_large(limit: int) -> HTTPException:
    # an HTTPException passes through FastAPI's body parsing to the error handler as is
    return HTTPException(413, f"The request body is larger than {limit} bytes.")


class BodyLimit:
    """Refuse bodies over `limit` bytes with 413, by header or by counting as they arrive."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _too_large(self.limit)
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        exc = PayloadTooLarge(f"The request body is larger than {self.limit} bytes.")
        await error_response(exc, scope["path"])(scope, receive, send)


class DrainGate:
    """While `is_draining()`, new requests get 503 with Retry-After; /health still answers."""

    def __init__(self, app: ASGIApp, is_draining: Callable[[], bool]) -> None:
        self.app = app
        self.is_draining = is_draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.is_draining() and scope["path"] != "/health":
            exc = Overloaded("The server is shutting down; retry on another instance.")
            await error_response(exc, scope["path"])(scope, receive, send)
            return
        await self.app(scope, receive, send)
