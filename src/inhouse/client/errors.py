"""The one error the client raises for an answer that is not a success."""

from __future__ import annotations

import httpx


class InhouseAPIError(Exception):
    """The server refused a request: its HTTP status and the OpenAI-shaped error body."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code or type or 'error'}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.type = type
        self.param = param

    @classmethod
    def from_response(cls, response: httpx.Response) -> InhouseAPIError:
        """The error a failed response describes; a body that is not OpenAI-shaped (a proxy's
        HTML page, say) becomes the message as it is."""
        error = _error_body(response)
        if error is None:
            text = response.text.strip()[:500] or response.reason_phrase
            return cls(response.status_code, None, text)
        return cls(
            response.status_code,
            _str_or_none(error.get("code")),
            str(error.get("message") or response.reason_phrase),
            type=_str_or_none(error.get("type")),
            param=_str_or_none(error.get("param")),
        )


def _error_body(response: httpx.Response) -> dict[str, object] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
