"""What the version and schedule tests share: a model store holding a tiny llama model and
tuned versions of it (adapter sets), people with their API keys' principals, and finished
jobs written straight into the store.

A job row is written as the runner would leave it after training, exporting and evaluating
(status succeeded, `fine_tuned_model`, `evaluation`): a fake of the runner's outcome, so that
promotion and the schedules are tested without training (the runner's own tests train).
"""

from __future__ import annotations

import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from inhouse.audit.trail import AuditTrail
from inhouse.auth.authenticate import principal_for_key
from inhouse.auth.directory import Directory
from inhouse.auth.policy import Principal
from inhouse.models.store import ModelStore
from inhouse.store.db import Database
from inhouse.store.tables import AuditEntry, TuningJob, User
from inhouse.tuning.jobs import SUCCEEDED, Hyperparameters
from tests.gguf_files import write_lora, write_model

ACTOR = "cli:test"
BASE = "tiny"
VERSIONS = ("v1", "v2", "v3")  # adapter sets on `tiny`, ready to be a job's tuned model


def build_store(folder: Path) -> Path:
    """A model store home with `tiny` and the adapter sets VERSIONS (built once per module)."""
    files = folder / "files"
    files.mkdir(parents=True)
    store = ModelStore(folder)
    store.import_file(write_model(files / "tiny.gguf"), BASE)
    lora = write_lora(files / "lora.gguf")
    for name in VERSIONS:
        store.add_adapter_set(name, BASE, [(lora, 1.0)])
    return folder


def copy_store(template: Path, home: Path) -> ModelStore:
    shutil.copytree(template / "models", home / "models")
    return ModelStore(home)


def principal(db: Database, audit: AuditTrail, name: str) -> Principal:
    """The principal of a fresh API key of `name`, as the server authenticates it."""
    with db.write() as session:
        _, secret = Directory(session, audit, ACTOR).create_key(name)
    with db.read() as session:
        return principal_for_key(session, secret, time.time())


def add_people(db: Database, audit: AuditTrail) -> dict[str, Principal]:
    """ann and bob (members) and root (an admin)."""
    with db.write() as session:
        directory = Directory(session, audit, ACTOR)
        directory.add_user("ann")
        directory.add_user("bob")
        directory.add_user("root", role="admin")
    return {name: principal(db, audit, name) for name in ("ann", "bob", "root")}


def passing(base_loss: float = 2.0, tuned_loss: float = 1.5) -> dict[str, Any]:
    return {
        "passed": True,
        "reasons": [],
        "base": {"loss": base_loss, "score": 0.2},
        "tuned": {"loss": tuned_loss, "score": 0.6},
    }


def failing(reason: str = "the tuned loss 2.3 is not below the base loss 2.0") -> dict[str, Any]:
    return {
        "passed": False,
        "reasons": [reason],
        "base": {"loss": 2.0, "score": 0.2},
        "tuned": {"loss": 2.3, "score": 0.1},
    }


@dataclass
class FinishedJob:
    name: str
    owner: str | None  # a user name; None: the operator
    model: str | None  # its tuned model in the store
    evaluation: dict[str, Any] | None
    status: str = SUCCEEDED
    parent: str | None = None


def write_job(db: Database, job: FinishedJob) -> str:
    """Write a job row as the runner leaves it; returns its public id."""
    public_id = "ftjob-" + secrets.token_hex(12)
    now = time.time()
    with db.write() as session:
        owner = session.scalar(select(User.id).where(User.name == job.owner)) if job.owner else None
        parent = (
            session.scalar(select(TuningJob.id).where(TuningJob.name == job.parent))
            if job.parent
            else None
        )
        session.add(
            TuningJob(
                public_id=public_id,
                name=job.name,
                owner_user_id=owner,
                created_by=ACTOR,
                base_model=BASE,
                parent_job_id=parent,
                dataset_name="support",
                method="lora",
                hyperparameters=asdict(Hyperparameters(epochs=1, batch_size=2)),
                scorer="contains",
                status=job.status,
                created_at=now,
                started_at=now,
                finished_at=now if job.status == SUCCEEDED else None,
                fine_tuned_model=job.model,
                evaluation=job.evaluation,
            )
        )
    return public_id


def finish(db: Database, name: str, model: str, evaluation: dict[str, Any]) -> None:
    """Mark a queued job succeeded as the runner would after training it (see above)."""
    with db.write() as session:
        job = session.scalar(select(TuningJob).where(TuningJob.name == name))
        assert job is not None
        job.status, job.finished_at = SUCCEEDED, time.time()
        job.fine_tuned_model, job.evaluation = model, evaluation


def audit_entries(db: Database, action: str) -> list[AuditEntry]:
    with db.read() as session:
        query = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
        return list(session.scalars(query))
