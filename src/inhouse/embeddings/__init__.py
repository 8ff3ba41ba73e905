"""Sentence embeddings on the CPU without PyTorch: the model and the app's lazy holder of it."""

from inhouse.embeddings.minilm import EmbedderUnavailable, MiniLMEmbedder

__all__ = ["EmbedderUnavailable", "MiniLMEmbedder"]
