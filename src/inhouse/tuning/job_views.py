"""How a job and its events are shown: OpenAI's `fine_tuning.job` and
`fine_tuning.job.event` shapes, plus inhouse's fields; never a data set's content."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from inhouse.store.tables import TuningDataset, TuningJob, TuningJobEvent, User


def job_view(session: Session, job: TuningJob) -> dict[str, Any]:
    """A job in OpenAI's shape (`fine_tuning.job`) plus inhouse's fields."""
    owner = session.get(User, job.owner_user_id) if job.owner_user_id else None
    dataset = session.get(TuningDataset, job.dataset_id) if job.dataset_id else None
    held_out = session.get(TuningDataset, job.eval_dataset_id) if job.eval_dataset_id else None
    parent = session.get(TuningJob, job.parent_job_id) if job.parent_job_id else None
    progress = job.progress or {}
    hyper = {
        "n_epochs": job.hyperparameters["epochs"],
        "batch_size": job.hyperparameters["batch_size"],
        "learning_rate_multiplier": job.hyperparameters["learning_rate"] / 2e-4,
    }
    return {
        "id": job.public_id,
        "object": "fine_tuning.job",
        "name": job.name,
        "model": job.base_model,
        "status": job.status,
        "created_at": int(job.created_at),
        "finished_at": int(job.finished_at) if job.finished_at else None,
        "fine_tuned_model": job.fine_tuned_model,
        "organization_id": "inhouse",
        "owner": owner.name if owner else None,
        "training_file": dataset.public_id if dataset else None,
        "validation_file": held_out.public_id if held_out else None,
        "dataset": job.dataset_name,
        "hyperparameters": hyper,
        "method": {
            "type": "supervised",
            "supervised": {"hyperparameters": hyper},
            "lora": job.hyperparameters,
        },
        "result_files": [],
        "trained_tokens": job.trained_tokens or None,
        "error": job.error,
        "seed": job.hyperparameters["seed"],
        "estimated_finish": _estimated_finish(job),
        "integrations": [],
        "metadata": None,
        "user_provided_suffix": None,
        "continued_from": parent.name if parent else None,
        "scorer": job.scorer,
        "progress": progress,
        "attempts": job.attempts,
        "train_seconds": round(job.train_seconds, 1),
        "torch_eval_loss": job.torch_eval_loss,
        "evaluation": job.evaluation,
    }


def event_view(job: TuningJob, row: TuningJobEvent) -> dict[str, Any]:
    return {
        "id": f"ftevent-{row.id}",
        "object": "fine_tuning.job.event",
        "created_at": int(row.created_at),
        "level": row.level,
        "message": row.message,
        "data": row.data,
        "type": row.type,
        "seq": row.id,
        "fine_tuning_job_id": job.public_id,
    }


def _estimated_finish(job: TuningJob) -> int | None:
    eta = (job.progress or {}).get("eta_s")
    beat = job.heartbeat_at
    if job.finished_at is not None or beat is None or not isinstance(eta, (int, float)):
        return None  # not running, or no estimate yet
    return int(beat + eta)
