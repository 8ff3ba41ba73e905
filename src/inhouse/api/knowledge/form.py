"""The one file of a multipart/form-data upload, streamed into a sink as it arrives.

The body is parsed piece by piece (python-multipart) in a worker thread, so neither the
event loop nor memory ever holds the whole file. Besides the file part (field `file`), a form
may carry a few small fields (the `purpose` OpenAI's client sends, say): they are skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import anyio.to_thread
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from inhouse.errors import InvalidRequest, PayloadTooLarge

FILE_FIELD = "file"
FORM_OVERHEAD = 64 * 1024  # boundaries, part headers and small fields beside the file


class Sink(Protocol):
    limit: int

    def write(self, data: bytes) -> None: ...


def boundary_of(content_type: str) -> bytes:
    """The multipart boundary of the request; InvalidRequest if it is no multipart form."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary", b"")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidRequest(
            "send the file as multipart/form-data, in a field named 'file'", param="file"
        )
    return boundary


class FileForm:
    """Callbacks of the parser: the `file` part's bytes go to the sink, the rest is counted."""

    def __init__(self, boundary: bytes, sink: Sink) -> None:
        self.sink = sink
        self.filename: str | None = None
        self.ended = False
        self._field, self._value = bytearray(), bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._into_file = False
        self._budget = sink.limit + FORM_OVERHEAD  # every byte of the body counts against it
        callbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_end": self._end,
        }
        self.parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]

    def feed(self, data: bytes) -> None:
        self._budget -= len(data)
        if self._budget < 0:
            raise PayloadTooLarge(f"the form is larger than {self.sink.limit} bytes and a file")
        try:
            self.parser.write(data)
        except MultipartParseError as exc:
            raise InvalidRequest(f"the multipart form is malformed: {exc}") from None

    def _part_begin(self) -> None:
        self._headers, self._into_file = {}, False

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") != FILE_FIELD.encode() or b"filename" not in options:
            return
        if self.filename is not None:
            raise InvalidRequest("send one file per request", param="file")
        try:
            self.filename = options[b"filename"].decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("the file name is not UTF-8 text", param="file") from None
        self._into_file = True

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._into_file:
            self.sink.write(data[start:end])

    def _end(self) -> None:
        self.ended = True


async def receive_file(body: AsyncIterator[bytes], content_type: str, sink: Sink) -> str:
    """Stream the form's file into `sink`; its client-side file name."""
    form = FileForm(boundary_of(content_type), sink)
    try:
        async for piece in body:
            if piece:
                await anyio.to_thread.run_sync(form.feed, piece)
    except ClientDisconnect:  # no one to answer: an error, not a crash in the log
        raise InvalidRequest("the client went away before the whole file arrived") from None
    if not form.ended:
        raise InvalidRequest("the multipart form ended early")
    if form.filename is None:
        raise InvalidRequest("the form has no file in a field named 'file'", param="file")
    return form.filename
