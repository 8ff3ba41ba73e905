"""Typed errors carrying an HTTP status and a machine-readable code.

Every layer raises these; one handler in `inhouse.api` renders them in the wire format of
the API that was called (OpenAI-shaped on `/v1`).
"""

from __future__ import annotations


class InhouseError(Exception):
    """Base class: a message for humans plus (status, type, code) for machines."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(InhouseError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class Unauthorized(InhouseError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(InhouseError):
    status = 403
    type = "permission_error"


class NotFound(InhouseError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class Conflict(InhouseError):
    """The change is well-formed but the current state forbids it (e.g. the last admin)."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(InhouseError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class QuotaExceeded(InhouseError):
    status = 429
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: int = 1, **kwargs: str | None):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class Overloaded(InhouseError):
    """The engine's queue is full, or the server is shutting down; retry later."""

    status = 503
    type = "server_error"
    code = "overloaded"

    def __init__(self, message: str, *, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class EngineDead(InhouseError):
    status = 503
    type = "server_error"
    code = "engine_unavailable"


class InvalidModelFile(InvalidRequest):
    """A file offered as a model or adapter is not a well-formed, safe GGUF; it was refused."""

    code = "invalid_model_file"


class ModelLoadFailed(InhouseError):
    """llama.cpp could not load a stored model (or create its context); the server keeps
    serving the others. Import refuses files that cannot load, so this is rare."""

    code = "model_load_failed"


class ModelStoreCorrupt(InhouseError):
    """The model store's manifest cannot be read; nothing was changed."""

    code = "model_store_corrupt"


class InvalidSchema(InvalidRequest):
    """A `response_format` JSON schema that no grammar can enforce; the message says why."""

    code = "invalid_schema"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="response_format")
