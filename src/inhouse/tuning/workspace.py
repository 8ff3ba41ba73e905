"""A job's folder: the files its trainer reads and writes, made once, kept across restarts.

`<home>/tuning/jobs/<job id>/` holds `spec.json` (the TrainSpec), `train.jsonl` and
`eval.jsonl` (the examples, owner-only), then what the trainer writes: `progress.jsonl`,
`checkpoints/`, `final/` (the PEFT adapter) and `trainer.log`; the runner adds
`adapter.gguf`. A job started again (its trainer or the server died) finds its folder and
resumes from the newest checkpoint instead of starting over.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inhouse.config import TuningSettings
from inhouse.errors import InhouseError
from inhouse.models.store import ModelStore
from inhouse.store.private import private_dir
from inhouse.store.tables import TuningDataset, TuningExample, TuningJob
from inhouse.tuning.trainer.spec import TrainSpec

Example = dict[str, Any]
SPEC, TRAIN, EVAL = "spec.json", "train.jsonl", "eval.jsonl"
PROGRESS, LOG, FINAL, GGUF = "progress.jsonl", "trainer.log", "final", "adapter.gguf"


@dataclass(frozen=True)
class Split:
    train: list[Example]
    eval: list[Example]


def jobs_root(home: Path) -> Path:
    return home / "tuning" / "jobs"


def job_dir(home: Path, public_id: str) -> Path:
    return jobs_root(home) / public_id


def split_examples(rows: Sequence[tuple[str, Example]], eval_split: float, seed: int) -> Split:
    """The data set's own split; without eval examples, a seeded `eval_split` of train (at
    least one example held out when there are two or more)."""
    train = [e for split, e in rows if split == "train"]
    held = [e for split, e in rows if split == "eval"]
    if held or eval_split <= 0 or len(train) < 2:
        return Split(train, held)
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(train) - 1, max(1, round(len(train) * eval_split)))
    chosen = set(order[:n_eval])
    return Split(
        [e for i, e in enumerate(train) if i not in chosen],
        [e for i, e in enumerate(train) if i in chosen],
    )


def plan(
    session: Session, job: TuningJob, models: ModelStore, settings: TuningSettings, home: Path
) -> tuple[Split, TrainSpec]:
    """What a job's trainer gets: its examples split, and its spec. The held-out examples are
    the eval data set's when the job has one, else the data set's own eval split, else a
    seeded `eval_split` of its training examples."""
    if job.dataset_id is None:
        raise InhouseError(f"the data set {job.dataset_name!r} was deleted")
    dataset = session.get(TuningDataset, job.dataset_id)
    rows = _examples(session, job.dataset_id)
    if job.eval_dataset_id is not None:
        rows = [r for r in rows if r[0] == "train"]
        rows += [("eval", e) for _, e in _examples(session, job.eval_dataset_id)]
    parent = session.get(TuningJob, job.parent_job_id) if job.parent_job_id else None
    hyper = job.hyperparameters
    split = split_examples(rows, float(hyper["eval_split"]), int(hyper["seed"]))
    folder = job_dir(home, job.public_id)
    spec = TrainSpec(
        base_gguf=str(models.resolve(job.base_model).path),
        train_file=str(folder / TRAIN),
        eval_file=str(folder / EVAL) if split.eval else None,
        format=dataset.format if dataset else "chat",
        rank=int(hyper["rank"]),
        alpha=float(hyper["alpha"]),
        epochs=int(hyper["epochs"]),
        learning_rate=float(hyper["learning_rate"]),
        batch_size=int(hyper["batch_size"]),
        max_length=int(hyper["max_length"]),
        seed=int(hyper["seed"]),
        threads=settings.threads,
        checkpoint_every=settings.checkpoint_every,
        max_memory_mb=settings.max_memory_mb,
        init_adapter=str(job_dir(home, parent.public_id) / FINAL) if parent else None,
    )
    return split, spec


def write_workspace(folder: Path, split: Split, spec: TrainSpec) -> None:
    """Write the examples and the spec; `spec.json` last, renamed in, so a folder with a spec
    is complete."""
    private_dir(folder)
    _write_jsonl(folder / TRAIN, split.train)
    _write_jsonl(folder / EVAL, split.eval)
    temp = folder / (SPEC + ".tmp")
    temp.write_text(spec.to_json())
    os.replace(temp, folder / SPEC)


def read_spec(folder: Path) -> TrainSpec | None:
    path = folder / SPEC
    return TrainSpec.from_json(path.read_text()) if path.exists() else None


def read_eval(folder: Path) -> list[Example]:
    path = folder / EVAL
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def remove_workspace(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _examples(session: Session, dataset_id: int) -> list[tuple[str, Example]]:
    """(split, example) of a data set, in order."""
    rows = session.execute(
        select(TuningExample.split, TuningExample.data)
        .where(TuningExample.dataset_id == dataset_id)
        .order_by(TuningExample.ordinal)
    )
    return [(split, data) for split, data in rows]


def _write_jsonl(path: Path, examples: Sequence[Example]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        for example in examples:
            out.write(json.dumps(example, ensure_ascii=False) + "\n")
