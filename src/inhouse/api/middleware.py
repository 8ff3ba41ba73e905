"""ASGI middleware: each request body read whole under limits, and 503 while draining.

`RequestBody` reads a body before the app sees it, so that three things hold for every route
(OpenAI, Ollama and admin alike) in one place:
- a body over `max_body_bytes` gets 413, by its Content-Length or by counting what arrives;
- a client that does not finish sending its body within `timeout_s` gets 408 and its
  connection closed (without it, a connection that announces a body and sends nothing is
  held open for ever, and thousands of them exhaust the server);
- JSON text holding a lone UTF-16 surrogate (`"\\ud800"`) gets 400: Python decodes it into a
  `str` that cannot be encoded back, and every tokenizer, database driver or grammar fails on
  it far from the place where the client could be told.

Uploads (`STREAMED`) are the exception: their route streams the body to disk under its own,
larger limit, so the body is passed through unread; a client that pauses for `timeout_s`
still gets 408.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inhouse.api.errors import error_response
from inhouse.errors import InhouseError, InvalidRequest, Overloaded, PayloadTooLarge

THREAD_FROM_BYTES = 256 * 1024
# POST routes that read (and bound) their own body: knowledge and training file uploads
STREAMED = re.compile(r"/v1/knowledge/collections/[^/]+/documents|/v1/files")

# a `\uD800`-`\uDFFF` escape, a surrogate encoded as UTF-8 bytes (json.loads passes both),
# or a NUL byte (JSON in UTF-16/32, which json.loads also accepts)
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]|\x00")


class RequestTimeout(InhouseError):
    """The client did not send its whole request body in time."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class _Disconnected(Exception):
    """The client went away while sending its body: there is no one to answer."""


def has_lone_surrogate(body: bytes) -> bool:
    """Whether `body` is JSON holding a string with an unpaired UTF-16 surrogate."""
    if _MAYBE_SURROGATE.search(body) is None:
        return False
    try:
        data = json.loads(body)
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (ValueError, RecursionError):
        return False  # not JSON at all: the route's own parsing says so
    return False


async def _has_lone_surrogate(body: bytes) -> bool:
    # parsing megabytes takes tens of milliseconds: not on the event loop
    if len(body) < THREAD_FROM_BYTES:
        return has_lone_surrogate(body)
    return await anyio.to_thread.run_sync(has_lone_surrogate, body)


class RequestBody:
    """Read each HTTP request's body whole within `limit` bytes and `timeout_s` seconds."""

    def __init__(self, app: ASGIApp, limit: int, timeout_s: float) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST" and STREAMED.fullmatch(scope["path"]):
            await self.app(scope, _paced(receive, self.timeout_s), send)
            return
        try:
            body = await self._read(scope, receive)
        except _Disconnected:
            return
        except InhouseError as refused:
            # the rest of the body is still on its way: close rather than read it
            response = error_response(refused, scope["path"])
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        if await _has_lone_surrogate(body):
            exc = InvalidRequest(
                "The request body holds text that is not valid UTF-8 "
                "(a lone surrogate such as \\ud800)."
            )
            await error_response(exc, scope["path"])(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body; PayloadTooLarge, RequestTimeout or _Disconnected otherwise."""
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            raise self._too_large()
        chunks: list[bytes] = []
        seen = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Disconnected
                    chunk: bytes = message.get("body", b"")
                    seen += len(chunk)
                    if seen > self.limit:
                        raise self._too_large()
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise RequestTimeout(
                f"The request body did not arrive within {self.timeout_s:g} seconds."
            ) from None

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"The request body is larger than {self.limit} bytes.")


def _paced(receive: Receive, timeout_s: float) -> Receive:
    """A receive that raises RequestTimeout when the next piece of the body takes longer than
    `timeout_s` to arrive (the total is bounded by the route's size limit)."""
    done = False

    async def paced() -> Message:
        nonlocal done
        if done:
            return await receive()
        try:
            async with asyncio.timeout(timeout_s):
                message = await receive()
        except TimeoutError:
            raise RequestTimeout(
                f"No part of the request body arrived for {timeout_s:g} seconds."
            ) from None
        done = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    return paced


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app `body` first, then passes on (a disconnect, say)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


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
