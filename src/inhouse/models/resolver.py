"""Model names -> what to load. The model store implements this; so does a single model."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from inhouse.embeddings.names import is_embedding_model
from inhouse.engine.pool import ModelSpec
from inhouse.errors import InvalidRequest, ModelNotFound
from inhouse.models.manifest import MANIFEST
from inhouse.models.store import ModelStore


class ModelResolver(Protocol):
    def resolve(self, name: str) -> ModelSpec:
        """The spec a name or alias stands for; ModelNotFound if none."""
        ...

    def names(self) -> list[str]:
        """Every name a client may call (models and aliases)."""
        ...

    def default(self) -> ModelSpec:
        """The model loaded at startup and never unloaded for idleness."""
        ...


def refuse_embedding_model(name: str) -> None:
    """InvalidRequest if `name`, which no generative model answers to, is the embedding model."""
    if is_embedding_model(name):
        raise InvalidRequest(
            f"'{name}' is an embedding model: it turns text into vectors and does not generate "
            "text. Use it with /v1/embeddings or /api/embed, and a chat model for chat and "
            "completions (GET /v1/models lists both).",
            param="model",
            code="embedding_model",
        )


class SingleModel:
    """One model under one name: `inhouse serve --model file.gguf`, and tests."""

    def __init__(self, name: str, path: Path) -> None:
        self.spec = ModelSpec(name=name, path=path, pinned=True)

    def resolve(self, name: str) -> ModelSpec:
        if name != self.spec.name:
            refuse_embedding_model(name)
            raise ModelNotFound(
                f"The model '{name}' does not exist; this server has '{self.spec.name}'.",
                param="model",
            )
        return self.spec

    def names(self) -> list[str]:
        return [self.spec.name]

    def default(self) -> ModelSpec:
        return self.spec


class StoreResolver:
    """Names and aliases from the model store; a change to the manifest shows up at once."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self._default = store.ensure_default()
        self._specs: dict[str, ModelSpec] = {}
        self._version: tuple[int, int, int] | None = None

    def _manifest_version(self) -> tuple[int, int, int]:
        # the manifest is only ever replaced whole (a new inode), so this spots every change
        st = (self.store.root / MANIFEST).stat()
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def resolve(self, name: str) -> ModelSpec:
        version = self._manifest_version()
        if version != self._version:
            self._specs, self._version = {}, version
        spec = self._specs.get(name)
        if spec is None:
            try:
                record = self.store.resolve(name)
            except ModelNotFound:
                refuse_embedding_model(name)
                raise
            spec = ModelSpec(
                name=record.name,
                path=record.path,
                adapters=tuple((a.path, a.scale) for a in record.adapters),
                pinned=record.builtin,
            )
            self._specs[name] = spec
        return spec

    def names(self) -> list[str]:
        return self.store.names()

    def default(self) -> ModelSpec:
        return self.resolve(self._default.name)
