"""Model names as Ollama clients send them: `name:latest` means `name`; unknown is a 404."""

from __future__ import annotations

from inhouse.engine.pool import ModelSpec
from inhouse.errors import ModelNotFound
from inhouse.models.resolver import ModelResolver

LATEST = ":latest"


def resolve(resolver: ModelResolver, name: str) -> tuple[str, ModelSpec]:
    """The name to serve `name` under and its spec; ModelNotFound in Ollama's words if none."""
    candidates = [name]
    if name.endswith(LATEST):
        candidates.append(name.removesuffix(LATEST))
    for candidate in candidates:
        try:
            return candidate, resolver.resolve(candidate)
        except ModelNotFound:
            continue
    raise ModelNotFound(f"model '{name}' not found", param="model")
