"""What routes get from the app: its state, and the API-key check."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from inhouse.api.metrics import Metrics
from inhouse.api.openai.serving import Serving
from inhouse.auth.admin_key import KeyVerifier
from inhouse.config import Settings
from inhouse.engine.pool import ModelPool
from inhouse.errors import Unauthorized


@dataclass
class AppState:
    settings: Settings
    pool: ModelPool
    serving: Serving
    metrics: Metrics
    verifier: KeyVerifier | None  # None: auth is off (loopback only)
    fingerprint: str
    started_at: int
    draining: bool = False


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.inhouse
    return state


def require_api_key(request: Request) -> None:
    """Refuse the request unless it carries a valid `Authorization: Bearer <key>`."""
    verifier = app_state(request).verifier
    if verifier is None:
        return
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized(
            "Missing API key: send it as 'Authorization: Bearer <key>'. The admin key was "
            "printed when the server first started."
        )
    if not verifier.check(key.strip()):
        raise Unauthorized("Incorrect API key provided.")
