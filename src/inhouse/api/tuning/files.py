"""/v1/files in OpenAI's shape, for purpose `fine-tune`: each file becomes a tuning data set.

An upload is streamed to a private temporary file within `tuning.max_file_mb`, checked
(a bad line, a missing assistant turn or an empty file: 400 naming the lines, nothing
stored) and stored as examples; the file itself is not kept. Members see and delete their
own files and read those shared with their groups; admins list and delete every file but
read the content only of those they may read; anyone else's file is a 404.
"""

from __future__ import annotations

import json
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from inhouse.api.deps import app_state
from inhouse.api.guard import client_ip, guard, principal_of
from inhouse.api.knowledge.form import FORM_OVERHEAD
from inhouse.api.tuning.form import receive_upload
from inhouse.auth.policy import Permission
from inhouse.errors import InvalidRequest, PayloadTooLarge
from inhouse.knowledge.uploads import upload_source
from inhouse.tuning.datasets import Format
from inhouse.tuning.service import DatasetService
from inhouse.tuning.uploads import Upload

router = APIRouter(prefix="/v1/files")
USE = [guard(Permission.TUNING_USE)]
PURPOSE = "fine-tune"
UPLOADS = ("tuning", "uploads")  # under the data directory


def _service(request: Request) -> DatasetService:
    state = app_state(request)
    return DatasetService(state.db, state.audit, state.settings.knowledge)


def file_object(dataset: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's File object, with the data set's sizes beside it."""
    named = dataset["name"] != dataset["id"]
    return {
        "id": dataset["id"],
        "object": "file",
        "bytes": dataset["bytes"],
        "created_at": int(dataset["created_at"]),
        "filename": dataset["name"] if named else dataset["source"],
        "purpose": PURPOSE,
        "status": "processed",
        "status_details": None,
        **{k: dataset[k] for k in ("name", "format", "examples", "train", "eval", "duplicates")},
    }


@router.post("", dependencies=USE)
async def upload_file(request: Request) -> dict[str, Any]:
    """Stream the form's file to disk, check it and store it as a data set (the file goes)."""
    settings = app_state(request).settings
    upload = await anyio.to_thread.run_sync(
        Upload, settings.home.joinpath(*UPLOADS), int(settings.tuning.max_file_mb * 2**20)
    )
    try:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > upload.limit + FORM_OVERHEAD:
            raise PayloadTooLarge(f"the file is larger than {upload.limit} bytes")
        content_type = request.headers.get("content-type", "")
        filename, purpose = await receive_upload(request.stream(), content_type, upload)
        if purpose != PURPOSE:
            raise InvalidRequest(f"only purpose {PURPOSE!r} is supported", param="purpose")
        source = upload_source(filename)
        data = await anyio.to_thread.run_sync(upload.read)
    finally:
        await anyio.to_thread.run_sync(upload.discard)
    kind = Format.TEXT if source.lower().endswith(".txt") else Format.CHAT
    principal, ip = principal_of(request), client_ip(request)
    service = _service(request)
    dataset = await anyio.to_thread.run_sync(
        lambda: service.add(principal, None, data, kind, source, ip=ip)
    )
    return file_object(dataset)


@router.get("", dependencies=USE)
def list_files(request: Request, purpose: str | None = None) -> dict[str, Any]:
    rows = _service(request).datasets(principal_of(request))
    data = [file_object(r) for r in rows] if purpose in (None, PURPOSE) else []
    return {"object": "list", "data": data, "has_more": False}


@router.get("/{file_id}", dependencies=USE)
def retrieve_file(file_id: str, request: Request) -> dict[str, Any]:
    return file_object(_service(request).show(principal_of(request), file_id))


@router.get("/{file_id}/content", dependencies=USE)
def file_content(file_id: str, request: Request) -> Response:
    """The examples as JSONL, training split first (for those who may read them only)."""
    rows = _service(request).examples(principal_of(request), file_id)
    body = "".join(json.dumps(example, ensure_ascii=False) + "\n" for _, example in rows)
    return Response(body, media_type="application/jsonl")


@router.delete("/{file_id}", dependencies=USE)
def delete_file(file_id: str, request: Request) -> dict[str, Any]:
    removed = _service(request).remove(principal_of(request), file_id, client_ip(request))
    return {"id": removed["id"], "object": "file", "deleted": True}
