"""What routes get from the app: its state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from inhouse.api.metrics import Metrics
from inhouse.api.openai.serving import Serving
from inhouse.auth.throttle import LoginThrottle
from inhouse.config import Settings
from inhouse.engine.pool import ModelPool
from inhouse.store.db import Database

if TYPE_CHECKING:
    from inhouse.api.governance import Governance
    from inhouse.audit.trail import AuditTrail


@dataclass
class AppState:
    settings: Settings
    pool: ModelPool
    serving: Serving
    metrics: Metrics
    db: Database
    audit: AuditTrail
    governance: Governance
    fingerprint: str
    started_at: int
    login_throttle: LoginThrottle
    draining: bool = False


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.inhouse
    return state
