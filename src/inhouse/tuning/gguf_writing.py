"""Writing GGUF files that tuning makes (adapters, merged models): never half-written, and
with a base model's metadata carried over when they are a model."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import gguf

SKIPPED_KEYS = ("general.architecture", "general.file_type")  # the writer sets these


def write_atomically(out: Path, arch: str, fill: Callable[[gguf.GGUFWriter], None]) -> Path:
    """A GGUF written by `fill` to a temp file beside `out`, flushed to disk, then renamed:
    a failure (a full disk) leaves neither a partial file nor an open one behind."""
    temp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.partial")
    writer = gguf.GGUFWriter(temp, arch)
    try:
        fill(writer)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with temp.open("rb+") as file:
            os.fsync(file.fileno())
        os.replace(temp, out)
    finally:
        writer.close()
        temp.unlink(missing_ok=True)
    return out


def copy_metadata(reader: gguf.GGUFReader, writer: gguf.GGUFWriter) -> None:
    """Every key of `reader`'s file (tokenizer, chat template, hyperparameters) into `writer`."""
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in SKIPPED_KEYS:
            continue
        sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), field.types[0], sub_type)


def architecture(reader: gguf.GGUFReader) -> str:
    return str(reader.fields["general.architecture"].contents())
