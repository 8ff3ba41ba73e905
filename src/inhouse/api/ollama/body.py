"""Request bodies read as JSON whatever their Content-Type, as Ollama reads them.

Ollama's own examples use `curl -d`, which labels the JSON as a form; FastAPI's body
parsing would refuse it, so the /api routes take their bodies through `json_body`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from inhouse.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


def json_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency that validates the body as `model`; 400 if it is missing or malformed."""

    async def parse(request: Request) -> M:
        raw = await request.body()
        if not raw.strip():
            raise InvalidRequest("missing request body")
        try:
            data: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("The request body is not valid JSON.") from None
        except RecursionError:
            raise InvalidRequest("The request body is nested too deeply.") from None
        if not isinstance(data, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None

    return parse
