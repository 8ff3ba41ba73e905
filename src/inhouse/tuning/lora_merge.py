"""A tuned model as one GGUF file: the base model's weights with the LoRA adapter added in.

Every tensor of the base is dequantized; the adapted ones get `alpha / rank x B @ A` (in the
GGUF's row order, as `lora_export` writes adapters), and the matrices are stored as F16
(norms and other vectors as F32). The metadata (tokenizer, chat template, architecture) is
the base's. Written beside `out` and renamed into place: a failed merge leaves no file.
For a model that runs without an adapter (other runtimes, or one file to hand over); the
adapter set stays what inhouse serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt

from inhouse.tuning.gguf_writing import architecture, copy_metadata, write_atomically
from inhouse.tuning.lora_export import LoraConfig, lora_deltas


def merge_lora(
    adapter_tensors: Mapping[str, npt.NDArray[np.generic]],
    config: LoraConfig,
    base_gguf: Path,
    out: Path,
) -> Path:
    """Write `base_gguf` + the PEFT adapter as a full F16 GGUF model at `out`."""
    deltas = lora_deltas(adapter_tensors, config, base_gguf)
    reader = gguf.GGUFReader(base_gguf)

    def fill(writer: gguf.GGUFWriter) -> None:
        copy_metadata(reader, writer)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        for tensor in reader.tensors:
            values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
            if tensor.name in deltas:
                values = values + deltas[tensor.name]
            writer.add_tensor(
                tensor.name, values.astype(np.float16) if values.ndim == 2 else values
            )

    return write_atomically(out, architecture(reader), fill)
