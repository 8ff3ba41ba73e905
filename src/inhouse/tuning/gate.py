"""The evaluation gate of a trained job: base vs tuned on the job's held-out examples, through
inhouse's own engine (`evaluate.py`), with the verdict `promote` reads.

The models are resolved the way serving resolves them, so inside `inhouse serve` the answers
come from the same engines users get (and share them); the CLI brings a pool of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from inhouse.config import Settings
from inhouse.models.resolver import ModelResolver, StoreResolver
from inhouse.models.store import ModelStore
from inhouse.store.tables import TuningJob
from inhouse.tuning.evaluate import (
    Answerer,
    EvalOptions,
    PoolAnswerer,
    evaluate,
    local_answerer,
    passes_gate,
)
from inhouse.tuning.workspace import read_eval

Evaluator = Callable[[TuningJob, Path], dict[str, Any]]
AnswererFactory = Callable[[], AbstractContextManager[Answerer]]


def job_evaluator(
    resolver: ModelResolver, answerers: AnswererFactory, settings: Settings
) -> Evaluator:
    """An evaluator for the runner: held-out loss and score of base and tuned, and the gate."""

    def run(job: TuningJob, folder: Path) -> dict[str, Any]:
        examples = read_eval(folder)
        if not examples:
            return {"error": "the job has no held-out examples to evaluate on", "passed": False}
        options = EvalOptions(
            scorer=job.scorer,
            max_length=int(job.hyperparameters["max_length"]),
            n_threads=settings.tuning.threads,
        )
        base, tuned = resolver.resolve(job.base_model), resolver.resolve(job.name)
        with answerers() as answerer:
            result = evaluate(base, tuned, examples, answerer, options)
        passed, reasons = passes_gate(result, job.torch_eval_loss)
        verdict = {"passed": passed, "reasons": reasons, "torch_loss": job.torch_eval_loss}
        return result.as_dict() | verdict | {"at": time.time()}

    return run


def served_evaluator(
    resolver: ModelResolver, answerer: PoolAnswerer, settings: Settings
) -> Evaluator:
    """Inside `inhouse serve`: answers from the server's own pool."""
    return job_evaluator(resolver, lambda: nullcontext(answerer), settings)


def local_evaluator(settings: Settings, models: ModelStore) -> Evaluator:
    """Without a server (the CLI): a pool of its own, opened per evaluation."""
    return job_evaluator(StoreResolver(models), lambda: local_answerer(settings.engine), settings)
