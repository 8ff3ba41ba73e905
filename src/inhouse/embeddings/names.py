"""The names of the sentence-embedding model, kept free of its runtime so anyone may import them."""

from __future__ import annotations

MODEL_NAME = "all-minilm-l6-v2"
# Names a client may use for the model, compared case-insensitively: ours and its HF name.
ALIASES = frozenset({MODEL_NAME, "sentence-transformers/all-minilm-l6-v2"})


def is_embedding_model(name: str) -> bool:
    """Whether `name`, in any case, names the embedding model."""
    return name.lower() in ALIASES
