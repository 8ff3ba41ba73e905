"""One place that turns every failure into the error JSON of the API that was called.

Under `/api/` that is Ollama's `{"error": "message"}`; everywhere else OpenAI's
`{"error": {"message", "type", "param", "code"}}`. The HTTP status is the same for both.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from inhouse.errors import InhouseError, Overloaded, QuotaExceeded

log = logging.getLogger(__name__)

OLLAMA_PREFIX = "/api/"


def is_ollama_path(path: str) -> bool:
    """Whether `path` belongs to the Ollama API, whose errors are `{"error": "message"}`."""
    return path.startswith(OLLAMA_PREFIX)


def error_body(
    message: str, type_: str, code: str | None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _render(
    path: str,
    status: int,
    body: dict[str, Any],
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """`body` (OpenAI-shaped) as is, or reduced to Ollama's shape when `path` is under /api/."""
    if is_ollama_path(path):
        body = {"error": body["error"]["message"]}
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(exc: InhouseError, path: str = "") -> JSONResponse:
    """The response for `exc` in the wire shape of the API at `path` (default: OpenAI's)."""
    headers = {}
    if isinstance(exc, Overloaded | QuotaExceeded):
        headers["Retry-After"] = str(exc.retry_after)
    body = error_body(exc.message, exc.type, exc.code, exc.param)
    return _render(path, exc.status, body, headers)


def _describe(error: dict[str, Any]) -> tuple[str, str | None]:
    loc = [str(part) for part in error.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    if error.get("type") == "json_invalid":
        return "The request body is not valid JSON.", None
    if error.get("type") == "model_attributes_type" and not loc:
        return "The request body must be a JSON object.", None
    where = f"'{param}': " if param else ""
    return f"Invalid value for {where}{error.get('msg', 'invalid value')}", param


async def _inhouse_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InhouseError)
    return error_response(exc, request.url.path)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    refusal = await _unauthenticated(request)
    if refusal is not None:
        return refusal
    message, param = _describe(exc.errors()[0]) if exc.errors() else ("Invalid request.", None)
    body = error_body(message, "invalid_request_error", "invalid_value", param)
    return _render(request.url.path, 400, body)


async def _unauthenticated(request: Request) -> JSONResponse | None:
    """FastAPI reads the body before the route's guard runs; a caller without valid
    credentials still gets 401, not a 400 that tells them how the body was parsed."""
    from inhouse.api.guard import Guard, authenticate
    from inhouse.auth.policy import Permission

    dependant = getattr(request.scope.get("route"), "dependant", None)
    calls = [d.call for d in dependant.dependencies] if dependant is not None else []
    if not any(isinstance(c, Guard) and c.permission is not Permission.PUBLIC for c in calls):
        return None
    try:
        await authenticate(request)
    except InhouseError as refused:
        return error_response(refused, request.url.path)
    return None


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
        exc.status_code
    )
    type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
    body = error_body(str(exc.detail), type_, code)
    return _render(request.url.path, exc.status_code, body, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    body = error_body("The server had an error processing the request.", "server_error", None)
    return _render(request.url.path, 500, body)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(InhouseError, _inhouse_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
