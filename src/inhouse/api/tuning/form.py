"""The multipart form of OpenAI's file upload: the file, streamed, and its `purpose` field."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio.to_thread
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect

from inhouse.api.knowledge.form import FileForm, Sink, boundary_of
from inhouse.errors import InvalidRequest

PURPOSE_FIELD = "purpose"
MAX_FIELD_BYTES = 64


class PurposeForm(FileForm):
    """A FileForm that also keeps the (short) value of the form's `purpose` field."""

    def __init__(self, boundary: bytes, sink: Sink) -> None:
        super().__init__(boundary, sink)
        self.purpose: bytearray | None = None
        self._in_purpose = False

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._in_purpose = options.get(b"name") == PURPOSE_FIELD.encode()
        if self._in_purpose:
            self.purpose = bytearray()
        super()._headers_finished()

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._in_purpose and self.purpose is not None:
            self.purpose.extend(data[start:end])
            if len(self.purpose) > MAX_FIELD_BYTES:
                raise InvalidRequest("the purpose is too long", param="purpose")
        super()._data(data, start, end)


async def receive_upload(
    body: AsyncIterator[bytes], content_type: str, sink: Sink
) -> tuple[str, str]:
    """Stream the form's file into `sink`; (its client-side file name, the purpose)."""
    form = PurposeForm(boundary_of(content_type), sink)
    try:
        async for piece in body:
            if piece:
                await anyio.to_thread.run_sync(form.feed, piece)
    except ClientDisconnect:
        raise InvalidRequest("the client went away before the whole file arrived") from None
    if not form.ended:
        raise InvalidRequest("the multipart form ended early")
    if form.filename is None:
        raise InvalidRequest("the form has no file in a field named 'file'", param="file")
    purpose = (form.purpose or b"").decode("utf-8", "replace")
    return form.filename, purpose
