"""What Ollama's model listings say about each servable name, from the store or the file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inhouse.embeddings.minilm import ModelCard
from inhouse.engine.pool import ModelSpec
from inhouse.errors import InvalidModelFile
from inhouse.models.inspect import inspect_file
from inhouse.models.resolver import ModelResolver, StoreResolver
from inhouse.models.store import ModelRecord

from .names import resolve


@dataclass(frozen=True)
class Facts:
    """One name a client may call, described the way /api/tags, /api/show and /api/ps do."""

    name: str
    size: int
    digest: str
    modified_at: str
    family: str
    parameters: int
    quantization: str
    context_length: int | None = None
    template: str | None = None
    license: str | None = None
    base: str | None = None  # an adapter set's base model
    format: str = "gguf"
    capabilities: tuple[str, ...] = ("completion",)
    embedding_length: int | None = None

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": self.base or "",
            "format": self.format,
            "family": self.family,
            "families": [self.family] if self.family else None,
            "parameter_size": parameter_size(self.parameters),
            "quantization_level": self.quantization,
        }

    def entry(self) -> dict[str, Any]:
        """An item of /api/tags' `models`."""
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": self.modified_at,
            "size": self.size,
            "digest": self.digest,
            "details": self.details(),
        }

    def model_info(self) -> dict[str, Any]:
        """/api/show's `model_info`, keyed like the GGUF metadata it comes from."""
        info: dict[str, Any] = {"general.parameter_count": self.parameters}
        if self.family:
            info["general.architecture"] = self.family
            if self.context_length is not None:
                info[f"{self.family}.context_length"] = self.context_length
            if self.embedding_length is not None:
                info[f"{self.family}.embedding_length"] = self.embedding_length
        return info


def parameter_size(count: int) -> str:
    """A parameter count the way model cards write it: 134515008 -> "135M", 1.7e9 -> "1.7B"."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            value = count / scale
            text = f"{value:.1f}" if value < 10 else f"{value:.0f}"
            return text.removesuffix(".0") + unit
    return str(count)


def list_facts(resolver: ModelResolver) -> list[Facts]:
    """Every name a client may call, aliases included, by name (blocking: reads files)."""
    if isinstance(resolver, StoreResolver):
        facts: list[Facts] = []
        for record in resolver.store.list():
            own = _from_record(record)
            facts += [own, *(replace(own, name=alias) for alias in record.aliases)]
        return sorted(facts, key=lambda f: f.name)
    return [_from_file(name, resolver.resolve(name)) for name in resolver.names()]


def facts_of(resolver: ModelResolver, name: str) -> Facts:
    """The facts of `name` (or `name:latest`); ModelNotFound if unknown (blocking)."""
    served, spec = resolve(resolver, name)
    if isinstance(resolver, StoreResolver):
        return replace(_from_record(resolver.store.resolve(served)), name=name)
    return replace(_from_file(served, spec), name=name)


def embedding_facts(card: ModelCard, name: str | None = None) -> Facts:
    """The sentence-embedding model, as Ollama describes its embedding models."""
    return Facts(
        name=name or card.name,
        size=card.size,
        digest=card.sha256,
        modified_at=_timestamp(card.modified),
        family=card.family,
        parameters=card.parameters,
        quantization=card.quantization,
        context_length=card.context_length,
        license=card.license,
        format=card.format,
        capabilities=("embedding",),
        embedding_length=card.dimensions,
    )


def _from_record(record: ModelRecord) -> Facts:
    model = record.model
    digest = model.sha256
    if record.adapters:  # the base's bytes plus adapters: a digest of its own
        parts = [model.sha256, *(f"{a.sha256}:{a.scale}" for a in record.adapters)]
        digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return Facts(
        name=record.name,
        size=model.size,
        digest=digest,
        modified_at=_modified(record.path),
        family=model.architecture,
        parameters=model.parameters,
        quantization=model.quantization,
        context_length=model.context_length,
        template=model.chat_template,
        license=model.license,
        base=record.base,
    )


def _from_file(name: str, spec: ModelSpec) -> Facts:
    """Facts read from the GGUF itself (no store: `--model file.gguf`); sparse if unreadable."""
    try:
        info = inspect_file(spec.path)
    except InvalidModelFile:
        return Facts(name, 0, "", _modified(spec.path), "", 0, "")
    return Facts(
        name=name,
        size=info.file_size,
        digest="",  # hashing a whole model file per listing would cost too much
        modified_at=_modified(spec.path),
        family=info.architecture,
        parameters=info.parameters,
        quantization=info.quantization,
        context_length=info.context_length,
        template=info.chat_template,
        license=info.license,
    )


def _modified(path: Path) -> str:
    try:
        stamp = path.stat().st_mtime
    except OSError:
        stamp = 0.0
    return _timestamp(stamp)


def _timestamp(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat().replace("+00:00", "Z")
