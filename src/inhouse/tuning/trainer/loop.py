"""The training run of one job: data, model, AdamW steps, checkpoints, events, final adapter.

Resuming is exact: the data order of an epoch is a function of (seed, epoch), the learning
rate a function of the step, dropout is reseeded per step, and a checkpoint holds the LoRA
weights and AdamW moments; so a run resumed from step N takes the same steps an
uninterrupted run would have taken from N. torch is imported only once the job's files have
been checked, so bad data or a refused file fails fast.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inhouse.errors import InvalidRequest
from inhouse.models.gguf import read_gguf
from inhouse.tuning.datasets import Example
from inhouse.tuning.lora_export import SUPPORTED_ARCHITECTURES, UnsupportedBaseModel
from inhouse.tuning.trainer import checkpoints
from inhouse.tuning.trainer.checkpoints import Tensors
from inhouse.tuning.trainer.data import (
    Encoded,
    NoTrainableTokens,
    encode_all,
    epoch_batches,
    read_examples,
    steps_per_epoch,
)
from inhouse.tuning.trainer.progress import Progress, now
from inhouse.tuning.trainer.spec import TrainSpec

if TYPE_CHECKING:
    from inhouse.tuning.trainer.model import Trainer

SPEC_FILE = "spec.json"
FINAL_DIR = "final"
WARMUP_FRACTION = 0.05


def read_spec(job_dir: Path) -> TrainSpec:
    """JOB_DIR/spec.json, checked."""
    try:
        text = (job_dir / SPEC_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cannot read {job_dir / SPEC_FILE} ({exc})") from None
    return TrainSpec.from_json(text)


def check_base(path: Path) -> None:
    """The base must be a GGUF model of an architecture the LoRA export supports."""
    if not path.is_file():
        raise InvalidRequest(f"the base model {path} does not exist", param="base_gguf")
    info = read_gguf(path)  # the safe parser first: transformers trusts the file
    if info.kind != "model" or info.architecture not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedBaseModel(
            f"{path.name} is a {info.architecture!r} {info.kind}; tuning supports "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}-architecture GGUF models only "
            "(e.g. SmolLM2, Llama 2/3)"
        )


def learning_rate(step: int, total: int, peak: float) -> float:
    """Linear warmup over the first few % of steps, then linear decay towards 0."""
    warmup = math.ceil(total * WARMUP_FRACTION)
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    return peak * (total - step) / (total - warmup)


@dataclass
class Position:
    """Where the run stands: what a checkpoint's state.json holds."""

    step: int = 0
    tokens: int = 0  # non-padding tokens trained on, all epochs
    epoch_losses: list[float] = field(default_factory=list)  # this epoch's step losses

    def state(self, spec: TrainSpec, total: int, per_epoch: int) -> dict[str, Any]:
        epoch, batch = divmod(self.step, per_epoch)
        return {
            "step": self.step,
            "total_steps": total,
            "epoch": epoch,
            "batch_in_epoch": batch,
            "seed": spec.seed,
            "tokens": self.tokens,
            "epoch_losses": self.epoch_losses,
        }


@dataclass(frozen=True)
class Plan:
    """The job's data and step count, fixed for all its runs."""

    data: list[Encoded]
    held: list[Encoded]
    dropped: int
    per_epoch: int
    total: int


def run(job_dir: Path) -> None:
    """Train the job in `job_dir` to completion, resuming from its newest checkpoint."""
    spec = read_spec(job_dir)
    checkpoints.remove_partials(job_dir)
    train = read_examples(Path(spec.train_file), spec.format)
    held = read_examples(Path(spec.eval_file), spec.format) if spec.eval_file else []
    newest = checkpoints.latest(job_dir)
    resume = checkpoints.read_checkpoint(newest) if newest else None
    initial: Tensors | None = None
    if resume is None and spec.init_adapter:
        initial = checkpoints.read_init_adapter(Path(spec.init_adapter), spec)
    check_base(Path(spec.base_gguf))
    from inhouse.tuning.trainer.model import Trainer  # torch from here on

    trainer = Trainer(spec)
    plan = _plan(trainer.tokenizer, spec, train, held)
    start = trainer.restore(resume, initial, plan.total)
    position = Position(start)
    if resume is not None:
        position.tokens = int(resume.state.get("tokens", 0))
        position.epoch_losses = [float(x) for x in resume.state.get("epoch_losses", [])]
    progress = Progress(job_dir)
    progress.emit(
        "start",
        total_steps=plan.total,
        examples=len(plan.data),
        dropped=plan.dropped,
        resumed_from=resume.step if resume else None,
    )
    _train(trainer, spec, job_dir, plan, position, progress)
    _finish(trainer, job_dir, plan, position, progress)


def _plan(tokenizer: Any, spec: TrainSpec, train: list[Example], held: list[Example]) -> Plan:
    data, dropped = encode_all(tokenizer, train, spec.max_length)
    if not data:
        raise NoTrainableTokens(
            f"none of the {len(train)} examples has a token to learn from after truncation "
            f"to {spec.max_length} tokens (no assistant turns?)"
        )
    evaluated, _ = encode_all(tokenizer, held, spec.max_length)
    per_epoch = steps_per_epoch(len(data), spec.batch_size)
    return Plan(data, evaluated, dropped, per_epoch, per_epoch * spec.epochs)


def _train(
    trainer: Trainer,
    spec: TrainSpec,
    job_dir: Path,
    plan: Plan,
    position: Position,
    progress: Progress,
) -> None:
    """Steps from `position` to the end, with an event per step and checkpoints."""
    lengths = [len(e.ids) for e in plan.data]
    first, started, run_tokens = position.step, time.monotonic(), 0
    batches: list[list[int]] = []
    for step in range(first, plan.total):
        epoch, index = divmod(step, plan.per_epoch)
        if index == 0 or not batches:
            batches = epoch_batches(lengths, spec.batch_size, spec.seed, epoch)
        position.epoch_losses = [] if index == 0 else position.epoch_losses
        order = batches[index]
        rate = learning_rate(step, plan.total, spec.learning_rate)
        loss, tokens = trainer.step([plan.data[i] for i in order], rate, step)
        position.step, position.tokens = step + 1, position.tokens + tokens
        position.epoch_losses.append(loss)
        run_tokens += tokens
        elapsed = time.monotonic() - started
        progress.emit(
            "progress",
            step=step + 1,
            total_steps=plan.total,
            epoch=round((step + 1) / plan.per_epoch, 4),
            loss=round(loss, 6),
            learning_rate=rate,
            tokens=position.tokens,
            tokens_per_s=round(run_tokens / elapsed, 2),
            eta_s=round(elapsed / (step + 1 - first) * (plan.total - step - 1), 1),
            time=now(),
        )
        if (step + 1) % spec.checkpoint_every == 0 and step + 1 < plan.total:
            trainer.save(job_dir, position.step, position.state(spec, plan.total, plan.per_epoch))
            progress.emit("checkpoint", step=step + 1)


def _finish(
    trainer: Trainer, job_dir: Path, plan: Plan, position: Position, progress: Progress
) -> None:
    """Evaluate, write final/ atomically, then report done."""
    eval_loss, eval_tokens = trainer.evaluate(plan.held) if plan.held else (None, 0)
    trainer.write_final(job_dir / FINAL_DIR)
    losses = position.epoch_losses
    progress.emit(
        "done",
        train_loss=round(sum(losses) / len(losses), 6) if losses else None,
        eval_loss=None if eval_loss is None else round(eval_loss, 6),
        eval_tokens=eval_tokens,
        trained_tokens=position.tokens,
        seconds=round(time.monotonic() - trainer.created, 2),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10,
    )
