"""The torch side: the base model from its GGUF with a PEFT LoRA on it, and the moves of
LoRA weights and AdamW state between torch and the numpy arrays checkpoints hold.

Only the child's loop imports this module (torch, transformers, peft: the `inhouse[tuning]` extra).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

from inhouse.errors import InvalidRequest
from inhouse.tuning.trainer.checkpoints import (
    Checkpoint,
    Tensors,
    publish,
    write_adapter,
    write_checkpoint,
)
from inhouse.tuning.trainer.data import IGNORE, Encoded
from inhouse.tuning.trainer.spec import TrainSpec

MOMENTS = ("exp_avg", "exp_avg_sq")


def load_base(spec: TrainSpec) -> tuple[Any, Any]:
    """(tokenizer, causal LM) of the GGUF, dequantized to float32 by transformers."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    base = Path(spec.base_gguf)
    tokenizer = AutoTokenizer.from_pretrained(str(base.parent), gguf_file=base.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(base.parent), gguf_file=base.name, dtype=torch.float32
    )
    return tokenizer, model


def with_lora(model: Any, spec: TrainSpec) -> Any:
    """`model` wrapped by PEFT with a fresh LoRA (seeded), base weights frozen."""
    torch.manual_seed(spec.seed)
    config = LoraConfig(
        r=spec.rank,
        lora_alpha=cast(int, spec.alpha),  # typed int by peft, used as alpha / r
        lora_dropout=spec.dropout,
        target_modules=list(spec.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def adapter_arrays(model: Any) -> Tensors:
    """The LoRA weights under PEFT's saved names (`base_model.model....lora_A.weight`)."""
    state = get_peft_model_state_dict(model)
    return {name: value.detach().float().numpy().copy() for name, value in state.items()}


def adapter_config(model: Any) -> dict[str, Any]:
    """adapter_config.json's content, as PEFT writes it."""
    config: dict[str, Any] = model.peft_config["default"].to_dict()
    return {k: (v.value if hasattr(v, "value") else v) for k, v in config.items()}


def load_adapter(model: Any, tensors: Tensors) -> None:
    """Put saved LoRA weights into `model`; every LoRA weight must be given, nothing else."""
    state = {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in tensors.items()}
    expected = set(get_peft_model_state_dict(model))
    if set(state) != expected:
        extra, missing = sorted(set(state) - expected), sorted(expected - set(state))
        raise InvalidRequest(
            "the adapter does not fit this job's LoRA (rank, targets or base model differ): "
            f"unexpected {extra[:2]}, missing {missing[:2]}"
        )
    shapes = {n: tuple(v.shape) for n, v in get_peft_model_state_dict(model).items()}
    for name, value in state.items():
        if tuple(value.shape) != shapes[name]:
            raise InvalidRequest(
                f"adapter tensor {name} is {list(value.shape)}, not {shapes[name]}"
            )
    set_peft_model_state_dict(model, state)


def trainable(model: Any) -> list[tuple[str, torch.nn.Parameter]]:
    """The LoRA parameters, in a fixed order."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def optimizer_arrays(optimizer: torch.optim.Optimizer, named: Any) -> Tensors:
    """AdamW's moments per parameter name (`<name>.exp_avg`, `<name>.exp_avg_sq`)."""
    arrays: Tensors = {}
    for name, param in named:
        state = optimizer.state.get(param) or {}
        for moment in MOMENTS if state else ():
            arrays[f"{name}.{moment}"] = state[moment].detach().numpy().copy()
    return arrays


def restore_optimizer(
    optimizer: torch.optim.Optimizer, named: Any, arrays: Tensors, steps: int
) -> None:
    """Put saved AdamW moments back; `steps` is AdamW's own step count."""
    if steps == 0:
        return
    for name, param in named:
        try:
            moments = {m: torch.from_numpy(arrays[f"{name}.{m}"].copy()) for m in MOMENTS}
        except KeyError:
            raise InvalidRequest(f"the checkpoint lacks AdamW state for {name}") from None
        if any(v.shape != param.shape for v in moments.values()):
            raise InvalidRequest(f"the checkpoint's AdamW state for {name} has the wrong shape")
        optimizer.state[param] = {"step": torch.tensor(float(steps)), **moments}


class Trainer:
    """The model, its LoRA and AdamW: takes steps, evaluates, saves."""

    def __init__(self, spec: TrainSpec) -> None:
        self.created = time.monotonic()
        self.spec = spec
        torch.set_num_threads(spec.threads)
        self.tokenizer, base = load_base(spec)
        self.model = with_lora(base, spec)
        self.named = trainable(self.model)
        self.optimizer = torch.optim.AdamW(
            [p for _, p in self.named], lr=spec.learning_rate, weight_decay=0.0
        )
        causal = self.model.get_base_model()
        self.decoder, self.head = causal.get_decoder(), causal.get_output_embeddings()
        pad = self.tokenizer.pad_token_id
        self.pad = pad if pad is not None else (self.tokenizer.eos_token_id or 0)

    def restore(self, resume: Checkpoint | None, initial: Tensors | None, total: int) -> int:
        """Load a checkpoint (returns its step) or the adapter to continue from (step 0)."""
        if resume is None:
            if initial is not None:
                load_adapter(self.model, initial)
            return 0
        if resume.state.get("total_steps") != total:
            raise InvalidRequest(
                f"the checkpoint at step {resume.step} was made for "
                f"{resume.state.get('total_steps')} steps, this job has {total}: "
                "its data or settings changed; start a new job"
            )
        load_adapter(self.model, resume.adapter)
        restore_optimizer(self.optimizer, self.named, resume.optimizer, resume.step)
        return resume.step

    def step(self, batch: Sequence[Encoded], rate: float, step: int) -> tuple[float, int]:
        """One AdamW step on `batch` at learning rate `rate`: (mean loss, tokens processed)."""
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        torch.manual_seed(self.spec.seed * 1_000_003 + step)  # dropout, resumable per step
        total, count = self._loss(batch)
        loss = total / count
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach()), sum(len(e.ids) for e in batch)

    def _loss(self, batch: Sequence[Encoded]) -> tuple[torch.Tensor, int]:
        """Summed NLL over the labelled tokens of `batch`, and their count.

        The LM head runs only where a label is, not on every position: for chat data most
        positions are prompt, and the head (vocabulary-wide) is the largest matmul."""
        ids, mask, labels = self._pad(batch)
        hidden = self.decoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
        target = labels[:, 1:]
        keep = target != IGNORE
        logits = self.head(hidden[keep])
        total = torch.nn.functional.cross_entropy(logits, target[keep], reduction="sum")
        return total, int(keep.sum())

    def _pad(
        self, batch: Sequence[Encoded]
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Right-padded to the longest in the batch; no mask when nothing is padded."""
        width = max(len(e.ids) for e in batch)
        ids = torch.full((len(batch), width), self.pad, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, example in enumerate(batch):
            size = len(example.ids)
            ids[row, :size] = torch.tensor(example.ids)
            labels[row, :size] = torch.tensor(example.labels)
            mask[row, :size] = 1
        return ids, (None if bool(mask.all()) else mask), labels

    def evaluate(self, data: Sequence[Encoded]) -> tuple[float, int]:
        """Mean NLL per labelled (assistant) token over `data`, and the token count."""
        self.model.eval()
        ordered = sorted(data, key=lambda e: len(e.ids))
        total, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(ordered), self.spec.batch_size):
                summed, n = self._loss(ordered[start : start + self.spec.batch_size])
                total, count = total + float(summed), count + n
        return total / max(count, 1), count

    def save(self, job_dir: Path, step: int, state: dict[str, Any]) -> None:
        """A checkpoint at `step` with the loop's `state`."""
        moments = optimizer_arrays(self.optimizer, self.named)
        checkpoint = Checkpoint(step, adapter_arrays(self.model), moments, state)
        write_checkpoint(job_dir, checkpoint, adapter_config(self.model))

    def write_final(self, folder: Path) -> None:
        """The trained adapter in PEFT's layout, swapped into `folder` atomically."""
        adapter, config = adapter_arrays(self.model), adapter_config(self.model)
        publish(folder, lambda temp: write_adapter(temp, adapter, config))
