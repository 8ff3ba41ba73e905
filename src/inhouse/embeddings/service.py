"""The app's embedding model: loaded on first use, run off the event loop, one batch at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt

from inhouse.config import EmbeddingsSettings
from inhouse.errors import InvalidRequest, ModelNotFound

from .minilm import EmbedderUnavailable, MiniLMEmbedder, ModelCard, installed_card
from .names import MODEL_NAME as MODEL_NAME  # where the API has always imported it from
from .names import is_embedding_model


class Embedder(Protocol):
    """What the service needs of a model (MiniLMEmbedder, or a test's own)."""

    name: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


@dataclass(frozen=True)
class Embedded:
    vectors: npt.NDArray[np.float32]
    token_counts: list[int]


class EmbeddingService:
    """Lazily built embedder shared by all requests; calls never overlap (one CPU-bound job)."""

    def __init__(
        self,
        settings: EmbeddingsSettings,
        factory: Callable[[], Embedder] | None = None,
        card: Callable[[], ModelCard] = installed_card,
    ) -> None:
        self.settings = settings
        self._factory = factory or (
            lambda: MiniLMEmbedder(threads=settings.threads, batch_size=settings.batch_size)
        )
        self._card = card
        self._embedder: Embedder | None = None
        self._failed = False  # the last attempt to build the embedder was refused
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()  # one embedding at a time, whoever asks
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def dimensions(self) -> int:
        return MiniLMEmbedder.dimensions

    def resolve_model(self, name: str) -> str:
        """The served model's name for `name`; ModelNotFound if unknown or embeddings are off."""
        if not self.settings.enabled:
            raise ModelNotFound(
                f"The model '{name}' does not exist: embeddings are turned off on this server "
                "(setting embeddings.enabled).",
                param="model",
            )
        if not is_embedding_model(name):
            raise ModelNotFound(
                f"The model '{name}' does not exist; this server embeds with '{MODEL_NAME}'.",
                param="model",
            )
        return MODEL_NAME

    def card(self) -> ModelCard | None:
        """The model's card for model listings; None unless it can be served (blocking)."""
        if not self.settings.enabled or self._failed:
            return None
        try:
            return self._card()
        except EmbedderUnavailable:
            return None

    def embedder(self) -> Embedder:
        """The embedder, built on first call (blocking: call from a worker thread)."""
        with self._load_lock:
            if self._embedder is None:
                try:
                    self._embedder = self._factory()
                except EmbedderUnavailable:
                    self._failed = True
                    raise
                self._failed = False
            return self._embedder

    def shared(self) -> Embedder:
        """The embedder for other in-process users (knowledge ingestion and search): their
        calls take turns with the API's (blocking: call from a worker thread)."""
        return _TakingTurns(self.embedder(), self._run_lock)

    async def embed(self, texts: Sequence[str]) -> Embedded:
        """Vectors for `texts`, in a worker thread once earlier requests are done.

        InvalidRequest (nothing computed) when the texts hold more than
        settings.max_request_tokens tokens.
        """
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(self._embed_sync, texts, limiter=self._limiter)

    def _embed_sync(self, texts: Sequence[str]) -> Embedded:
        embedder = self.shared()
        counts = embedder.count_tokens(texts)
        limit = self.settings.max_request_tokens
        if sum(counts) > limit:
            raise InvalidRequest(
                f"The input holds {sum(counts)} tokens; this server embeds at most {limit} "
                "tokens per request: send fewer or shorter texts.",
                param="input",
                code="max_tokens_per_request",
            )
        return Embedded(embedder.embed(texts), counts)


class _TakingTurns:
    """An embedder whose calls hold a lock, so that they never overlap another's."""

    def __init__(self, embedder: Embedder, lock: threading.Lock) -> None:
        self._embedder = embedder
        self._lock = lock
        self.name = embedder.name
        self.dimensions = embedder.dimensions

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        with self._lock:
            return self._embedder.embed(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        with self._lock:
            return self._embedder.count_tokens(texts)


class GGUFEmbeddings:
    """Embedding services for GGUF models asked for by name, built on first use, LRU-bounded."""

    def __init__(self, settings: EmbeddingsSettings, keep: int = 2) -> None:
        self.settings = settings
        self.keep = keep
        self._services: dict[tuple[str, Path], EmbeddingService] = {}

    def service_for(self, name: str, path: Path) -> EmbeddingService:
        key = (name, path)
        service = self._services.pop(key, None)
        if service is None:
            service = EmbeddingService(self.settings, factory=lambda: _llama(name, path, self))
        self._services[key] = service  # most recently used last
        while len(self._services) > self.keep:
            del self._services[next(iter(self._services))]
        return service


def _llama(name: str, path: Path, owner: GGUFEmbeddings) -> Embedder:
    from inhouse.engine.llama_embeddings import LlamaEmbedder

    return LlamaEmbedder(path, name, threads=owner.settings.threads)
