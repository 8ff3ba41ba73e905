"""What routes get from the app: its state."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from inhouse.api.generation.pipeline import Pipeline
from inhouse.api.metrics import Metrics
from inhouse.audit.trail import AuditTrail
from inhouse.auth.credentials import Credentials
from inhouse.auth.throttle import LoginThrottle
from inhouse.config import Settings
from inhouse.embeddings.service import EmbeddingService
from inhouse.engine.pool import ModelPool
from inhouse.governance.service import Governance
from inhouse.knowledge.service import KnowledgeService
from inhouse.models.resolver import ModelResolver
from inhouse.store.db import Database


@dataclass
class AppState:
    settings: Settings
    pool: ModelPool
    resolver: ModelResolver
    pipeline: Pipeline
    metrics: Metrics
    db: Database
    audit: AuditTrail
    governance: Governance
    credentials: Credentials
    embeddings: EmbeddingService
    knowledge: KnowledgeService
    fingerprint: str
    started_at: int
    login_throttle: LoginThrottle
    draining: bool = False


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.inhouse
    return state
