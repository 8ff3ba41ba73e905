"""What a training job is asked to do: `JOB_DIR/spec.json`, checked strictly on both sides.

This module imports no torch: the server builds and checks specs, and asks
`tuning_available` whether the child could run at all, without paying for torch.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import types
import typing
from dataclasses import dataclass
from typing import Any

from inhouse.errors import InvalidRequest

ALL_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FORMATS = ("chat", "text")
TUNING_PACKAGES = ("torch", "transformers", "peft", "safetensors")
INSTALL_HINT = "pip install 'inhouse[tuning]'"
MIN_MEMORY_MB = 64

# Inclusive (low, high) bounds of the numeric fields; None: unbounded on that side.
_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "rank": (1, 1024),
    "alpha": (1e-6, None),
    "dropout": (0.0, 0.99),
    "epochs": (1, 10_000),
    "learning_rate": (1e-9, 1.0),
    "batch_size": (1, 4096),
    "max_length": (8, 1 << 17),
    "seed": (0, (1 << 31) - 1),
    "threads": (1, 1024),
    "checkpoint_every": (1, None),
    "max_memory_mb": (MIN_MEMORY_MB, None),
}


@dataclass(frozen=True)
class TrainSpec:
    """One LoRA training job: base model, data, LoRA shape, optimisation and limits."""

    base_gguf: str
    train_file: str
    eval_file: str | None
    format: str
    epochs: int
    max_memory_mb: int | None
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ALL_MODULES
    learning_rate: float = 2e-4
    batch_size: int = 8
    max_length: int = 128
    seed: int = 0
    threads: int = 1
    checkpoint_every: int = 50
    init_adapter: str | None = None

    def __post_init__(self) -> None:
        _check_types(self)
        for name in ("alpha", "dropout", "learning_rate"):  # JSON may spell 32.0 as 32
            object.__setattr__(self, name, float(getattr(self, name)))
        _check_values(self)

    def to_json(self) -> str:
        """The spec as a JSON object with every field."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainSpec:
        """A spec from JSON: unknown, missing or mistyped fields raise InvalidRequest."""
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InvalidRequest(f"the training spec is not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise InvalidRequest("the training spec must be a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise InvalidRequest(f"unknown training spec fields: {', '.join(unknown)}")
        required = [n for n, f in fields.items() if _required(f)]
        missing = [n for n in required if n not in value]
        if missing:
            raise InvalidRequest(f"missing training spec fields: {', '.join(missing)}")
        if isinstance(value.get("target_modules"), list):
            value["target_modules"] = tuple(value["target_modules"])
        return cls(**value)


def tuning_available() -> str | None:
    """None when the trainer's packages are installed; else what to run to install them."""
    missing = [name for name in TUNING_PACKAGES if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return f"tuning needs {', '.join(missing)}, which are not installed: run {INSTALL_HINT}"


def _required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _check_types(spec: TrainSpec) -> None:
    hints = typing.get_type_hints(TrainSpec)
    for field in dataclasses.fields(spec):
        value = getattr(spec, field.name)
        if not _is_instance(value, hints[field.name]):
            raise InvalidRequest(
                f"training spec field {field.name!r} has the wrong type ({type(value).__name__})",
                param=field.name,
            )


def _is_instance(value: Any, hint: Any) -> bool:
    """isinstance for the hints TrainSpec uses; bool is not a number, an int is a float."""
    if isinstance(hint, types.UnionType):
        return any(_is_instance(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is tuple:
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    if isinstance(value, bool):
        return False
    if hint is float:
        return isinstance(value, int | float)
    return isinstance(value, hint)


def _check_values(spec: TrainSpec) -> None:
    for name, (low, high) in _BOUNDS.items():
        value = getattr(spec, name)
        if value is None:
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            raise InvalidRequest(
                f"training spec field {name!r} is {value}; allowed: "
                f"{'-inf' if low is None else low} to {'inf' if high is None else high}",
                param=name,
            )
    if spec.format not in FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}", param="format")
    bad = [m for m in spec.target_modules if m not in ALL_MODULES]
    if bad or not spec.target_modules or len(set(spec.target_modules)) != len(spec.target_modules):
        raise InvalidRequest(
            f"target_modules must be distinct names among {', '.join(ALL_MODULES)}",
            param="target_modules",
        )
    for name in ("base_gguf", "train_file"):
        if not getattr(spec, name):
            raise InvalidRequest(f"training spec field {name!r} is empty", param=name)
