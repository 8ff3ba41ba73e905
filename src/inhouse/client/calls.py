"""The request/response layer both clients share: a `Call` says what to send and how to read
the answer; `Client` and `AsyncClient` only carry it over their own httpx client."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import httpx

from inhouse.client.errors import InhouseAPIError

T = TypeVar("T")
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
Since = str | datetime | timedelta
FileSource = str | os.PathLike[str] | tuple[str, bytes]


@dataclass(frozen=True)
class Upload:
    """A file to send as the form field `file`: a path, or a name and its bytes."""

    source: FileSource

    @contextmanager
    def opened(self) -> Iterator[dict[str, tuple[str, IO[bytes] | bytes, str]]]:
        """The `files=` argument for httpx; a path is streamed, not read into memory."""
        kind = "application/octet-stream"
        if isinstance(self.source, tuple):
            name, data = self.source
            yield {"file": (name, data, kind)}
            return
        path = Path(self.source)
        with path.open("rb") as handle:
            yield {"file": (path.name, handle, kind)}


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API operation: method, path, query, JSON body or file, and the answer's reader."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: dict[str, str] = field(default_factory=dict)
    json: dict[str, Any] | None = None
    upload: Upload | None = None

    def result(self, response: httpx.Response) -> T:
        """The answer read, or InhouseAPIError when it is not a success."""
        if response.is_error:
            raise InhouseAPIError.from_response(response)
        return self.read(response)


def base_url_of(base_url: str) -> str:
    """The server's root: a trailing slash or `/v1` (as given to the OpenAI client) dropped."""
    root = base_url.rstrip("/")
    return root.removesuffix("/v1")


def headers_for(api_key: str | None) -> dict[str, str]:
    """The Authorization header: the key given, else INHOUSE_API_KEY, else none."""
    key = api_key if api_key is not None else os.environ.get("INHOUSE_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def since_param(since: Since) -> str:
    """A `since` value as the server reads it: a duration (`30d`), or a UTC date/time."""
    if isinstance(since, timedelta):
        return f"{max(0, int(since.total_seconds()))}s"
    if isinstance(since, datetime):
        moment = since if since.tzinfo else since.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat()
    return since
