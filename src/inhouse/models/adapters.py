"""Does a LoRA adapter GGUF fit a base model? The checks llama.cpp makes when it loads one."""

from __future__ import annotations

from inhouse.errors import InvalidModelFile
from inhouse.models.gguf import GGUFInfo

_PARTS = ("lora_a", "lora_b")
# llama.cpp applies the token embedding's adapter with A and B the other way round.
_TRANSPOSED = "token_embd.weight"

Shape = tuple[int, ...]


def check_lora(adapter: GGUFInfo, base: GGUFInfo, label: str, base_name: str) -> None:
    """Raise InvalidModelFile unless `adapter` is a LoRA for `base`'s architecture and tensors."""
    if adapter.kind != "adapter":
        raise InvalidModelFile(f"{label} is a model, not an adapter (its general.type is 'model')")
    if adapter.adapter_type != "lora":
        raise InvalidModelFile(
            f"{label}: adapter.type is {adapter.adapter_type!r}; only 'lora' adapters are supported"
        )
    if adapter.architecture != base.architecture:
        raise InvalidModelFile(
            f"{label} is an adapter for {adapter.architecture!r} models, "
            f"but {base_name!r} is a {base.architecture!r} model"
        )
    pairs = _pairs(adapter, label)
    for target, (a, b) in sorted(pairs.items()):
        weight = base.tensors.get(target)
        if weight is None:
            raise InvalidModelFile(f"{label}: {target!r} has no matching tensor in {base_name!r}")
        if not _fits(target, weight, a, b):
            raise InvalidModelFile(
                f"{label}: the LoRA tensors of {target!r} (A {list(a)}, B {list(b)}) "
                f"do not fit its shape {list(weight)} in {base_name!r}"
            )


def _pairs(adapter: GGUFInfo, label: str) -> dict[str, tuple[Shape, Shape]]:
    parts: dict[str, dict[str, Shape]] = {}
    for name, shape in adapter.tensors.items():
        target, _, part = name.rpartition(".")
        if part not in _PARTS or not target:
            raise InvalidModelFile(f"{label}: tensor {name!r} is not a .lora_a/.lora_b tensor")
        parts.setdefault(target, {})[part] = shape
    if not parts:
        raise InvalidModelFile(f"{label} holds no LoRA tensors")
    pairs: dict[str, tuple[Shape, Shape]] = {}
    for target, found in parts.items():
        missing = [p for p in _PARTS if p not in found]
        if missing:
            raise InvalidModelFile(f"{label}: {target!r} has no {missing[0]} tensor")
        pairs[target] = (found["lora_a"], found["lora_b"])
    return pairs


def _fits(target: str, weight: Shape, a: Shape, b: Shape) -> bool:
    if len(weight) != 2 or len(a) != 2 or len(b) != 2:
        return False
    if target == _TRANSPOSED:
        return weight[0] == b[1] and weight[1] == a[1]
    return weight[0] == a[0] and weight[1] == b[1] and a[1] == b[0]
