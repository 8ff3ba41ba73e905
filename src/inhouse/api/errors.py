"""One place that turns every failure into OpenAI's error JSON with the right status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from inhouse.errors import InhouseError, Overloaded, QuotaExceeded

log = logging.getLogger(__name__)


def error_body(
    message: str, type_: str, code: str | None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(exc: InhouseError) -> JSONResponse:
    headers = {}
    if isinstance(exc, Overloaded | QuotaExceeded):
        headers["Retry-After"] = str(exc.retry_after)
    body = error_body(exc.message, exc.type, exc.code, exc.param)
    return JSONResponse(body, status_code=exc.status, headers=headers)


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
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, param = _describe(exc.errors()[0]) if exc.errors() else ("Invalid request.", None)
    return JSONResponse(
        error_body(message, "invalid_request_error", "invalid_value", param), status_code=400
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
        exc.status_code
    )
    type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return JSONResponse(
        error_body(str(exc.detail), type_, code), status_code=exc.status_code, headers=exc.headers
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return JSONResponse(
        error_body("The server had an error processing the request.", "server_error", None),
        status_code=500,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(InhouseError, _inhouse_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
