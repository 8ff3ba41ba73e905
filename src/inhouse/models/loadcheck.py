"""Load a model file with llama.cpp, as serving it would, to refuse at import what cannot load.

Runs only in the inspector's child process (models.inspect), after the file passed the safe
GGUF parser: the weights are memory-mapped, not read, so this costs little time and memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import llama_cpp as ll

_LOG_ERROR = 4  # GGML_LOG_LEVEL_ERROR
_errors: list[str] = []


@ll.llama_log_callback  # type: ignore[untyped-decorator]
def _collect_errors(level: int, text: bytes, user_data: Any) -> None:
    """Keep llama.cpp's error lines: the refusal quotes the reason it gives."""
    if level == _LOG_ERROR:
        _errors.append(text.decode("utf-8", "replace").strip())


def load_error(path: Path) -> str | None:
    """Why llama.cpp cannot load the model at `path`, or None when it loads."""
    ll.llama_log_set(_collect_errors, None)
    ll.llama_backend_init()
    params = ll.llama_model_default_params()
    params.n_gpu_layers = 0
    params.use_mmap = True
    if hasattr(params, "use_extra_bufts"):
        params.use_extra_bufts = False  # no repacked copies of the weights: just a check
    model = ll.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        reasons = [line for line in _errors if line]
        return reasons[0] if reasons else "llama.cpp gave no reason"
    ll.llama_model_free(model)
    return None
