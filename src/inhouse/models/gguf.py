"""Safe GGUF inspection: every count, length and offset is checked against the file first.

Written from the GGUF spec (little-endian, versions 2 and 3). Nothing is allocated for a
count before the file is known to have room for it, strings, arrays and their nesting are
capped, and every tensor's data must lie inside the file. Big arrays (the vocabulary) are
walked and validated but not kept.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple

from inhouse.errors import InvalidModelFile
from inhouse.models.ggml_types import FILE_TYPES, TENSOR_TYPES, TensorType

MAGIC = b"GGUF"
VERSIONS = (2, 3)
MAX_STRING_BYTES = 1 << 20
MAX_ARRAY_ITEMS = 1 << 24
MAX_ARRAY_DEPTH = 3
MAX_KV = 1 << 16
MAX_TENSORS = 1 << 16
MAX_TENSOR_NAME = 63  # ggml's GGML_MAX_NAME is 64 bytes including the terminating NUL
MAX_DIMS = 4
DEFAULT_ALIGNMENT = 32

_STRING, _ARRAY = 8, 9
# GGUF value types of fixed size: u8 i8 u16 i16 u32 i32 f32 bool, then u64 i64 f64.
_SCALARS = {
    type_id: struct.Struct(fmt)
    for type_id, fmt in {
        0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
        10: "<Q", 11: "<q", 12: "<d",
    }.items()
}  # fmt: skip
_U32, _U64 = _SCALARS[4], _SCALARS[10]
# Smallest possible encodings, to bound a claimed count by the bytes left in the file.
_MIN_KV_BYTES = 8 + 1 + 4 + 1  # key length, a 1-byte key, value type, a 1-byte value
_MIN_TENSOR_BYTES = 8 + 1 + 4 + 8 + 4 + 8  # name length, name, n_dims, one dim, type, offset
# Strings kept from the metadata; all others are validated and skipped.
_TEXT_KEYS = frozenset(
    {
        "general.architecture",
        "general.name",
        "general.type",
        "general.license",
        "tokenizer.chat_template",
        "adapter.type",
    }
)


class _Opaque(NamedTuple):
    """A metadata value that was validated but not kept (an array, an unneeded string)."""

    type_id: int


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file is, read from its header; `tensors` maps name -> shape (ggml order)."""

    version: int
    architecture: str
    name: str | None
    kind: Literal["model", "adapter"]
    parameters: int
    quantization: str
    context_length: int | None
    chat_template: str | None
    license: str | None
    adapter_type: str | None
    lora_alpha: float | None
    tensors: Mapping[str, tuple[int, ...]]
    file_size: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `from_dict` reverses it."""
        fields = dict(self.__dict__)
        fields["tensors"] = {name: list(shape) for name, shape in self.tensors.items()}
        return fields

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GGUFInfo:
        """Rebuild from `to_dict` output."""
        fields = dict(data)
        fields["tensors"] = {name: tuple(shape) for name, shape in data["tensors"].items()}
        return cls(**fields)


class _Tensor(NamedTuple):
    name: str
    dims: tuple[int, ...]
    type: TensorType
    offset: int

    @property
    def n_elements(self) -> int:
        return prod(self.dims)


class _Reader:
    """Reads a file front to back; refuses any read that would pass the end of the file."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self.size = size
        self.pos = 0

    @property
    def remaining(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n > self.remaining:
            raise InvalidModelFile(
                f"truncated at byte {self.size}: {what} at byte {self.pos} needs {n} bytes"
            )

    def read(self, n: int, what: str) -> bytes:
        self.need(n, what)
        data = self._file.read(n)
        if len(data) != n:
            raise InvalidModelFile(f"truncated at byte {self.pos + len(data)} (file shrank)")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self._file.seek(n, os.SEEK_CUR)
        self.pos += n

    def scalar(self, fmt: struct.Struct, what: str) -> Any:
        return fmt.unpack(self.read(fmt.size, what))[0]

    def u32(self, what: str) -> int:
        value: int = self.scalar(_U32, what)
        return value

    def u64(self, what: str) -> int:
        value: int = self.scalar(_U64, what)
        return value

    def string_length(self, what: str, limit: int = MAX_STRING_BYTES) -> int:
        length = self.u64(f"length of {what}")
        if length > limit:
            raise InvalidModelFile(f"{what} claims {length} bytes, over the limit of {limit}")
        self.need(length, what)
        return length

    def skip_strings(self, count: int, what: str) -> None:
        """Walk `count` length-prefixed strings without keeping them (the vocabulary: fast)."""
        file, unpack, size = self._file, _U64.unpack, self.size
        for index in range(count):
            if size - self.pos < 8:
                self.need(8, f"length of item {index} of {what}")
            raw = file.read(8)
            if len(raw) != 8:
                raise InvalidModelFile(f"truncated at byte {self.pos + len(raw)} (file shrank)")
            (length,) = unpack(raw)
            self.pos += 8
            if length > MAX_STRING_BYTES:
                raise InvalidModelFile(
                    f"item {index} of {what} claims {length} bytes, "
                    f"over the limit of {MAX_STRING_BYTES}"
                )
            if length > size - self.pos:
                self.need(length, f"item {index} of {what}")
            file.seek(length, os.SEEK_CUR)
            self.pos += length

    def text(self, what: str, limit: int = MAX_STRING_BYTES) -> str:
        raw = self.read(self.string_length(what, limit), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidModelFile(f"{what} is not valid UTF-8") from exc


def read_gguf(path: Path) -> GGUFInfo:
    """Inspect the GGUF at `path`; raises InvalidModelFile saying what is wrong and where."""
    with path.open("rb", buffering=1 << 20) as file:
        size = os.fstat(file.fileno()).st_size
        reader = _Reader(file, size)
        version, n_tensors, n_kv = _read_header(reader)
        meta = _read_metadata(reader, n_kv)
        alignment = _alignment(meta)
        tensors = _read_tensor_infos(reader, n_tensors)
        _check_tensor_data(tensors, _align(reader.pos, alignment), alignment, size)
    return _summarize(version, meta, tensors, size)


def _read_header(reader: _Reader) -> tuple[int, int, int]:
    if reader.size < len(MAGIC) or reader.read(len(MAGIC), "magic") != MAGIC:
        raise InvalidModelFile("not a GGUF file (it does not start with 'GGUF')")
    version = reader.u32("version")
    if version not in VERSIONS:
        if int.from_bytes(version.to_bytes(4, "little"), "big") in VERSIONS:
            raise InvalidModelFile("big-endian GGUF files are not supported")
        raise InvalidModelFile(f"GGUF version {version} is not supported (only 2 and 3)")
    n_tensors = reader.u64("tensor count")
    n_kv = reader.u64("metadata count")
    _check_count(n_kv, "key-value pairs", MAX_KV, reader.remaining // _MIN_KV_BYTES)
    room = (reader.remaining - n_kv * _MIN_KV_BYTES) // _MIN_TENSOR_BYTES
    _check_count(n_tensors, "tensors", MAX_TENSORS, room)
    return version, n_tensors, n_kv


def _check_count(count: int, what: str, limit: int, room: int) -> None:
    if count > room:
        raise InvalidModelFile(
            f"header claims {count} {what}, file has room for at most {max(room, 0)}"
        )
    if count > limit:
        raise InvalidModelFile(f"header claims {count} {what}, over the limit of {limit}")


def _read_metadata(reader: _Reader, count: int) -> dict[str, object]:
    meta: dict[str, object] = {}
    for index in range(count):
        key = reader.text(f"key of metadata entry {index}")
        if not key:
            raise InvalidModelFile(f"metadata entry {index} has an empty key")
        if key in meta:
            raise InvalidModelFile(f"metadata key {key!r} appears twice")
        type_id = reader.u32(f"type of {key!r}")
        meta[key] = _read_value(reader, type_id, key, keep=key in _TEXT_KEYS)
    return meta


def _read_value(reader: _Reader, type_id: int, key: str, *, keep: bool) -> object:
    if type_id in _SCALARS:
        return reader.scalar(_SCALARS[type_id], f"value of {key!r}")
    if type_id == _STRING:
        if keep:
            return reader.text(f"value of {key!r}")
        reader.skip(reader.string_length(f"value of {key!r}"), f"value of {key!r}")
        return _Opaque(type_id)
    if type_id == _ARRAY:
        _skip_array(reader, key, depth=1)
        return _Opaque(type_id)
    raise InvalidModelFile(f"metadata {key!r} has unknown value type {type_id}")


def _skip_array(reader: _Reader, key: str, depth: int) -> None:
    if depth > MAX_ARRAY_DEPTH:
        raise InvalidModelFile(f"metadata {key!r} nests arrays deeper than {MAX_ARRAY_DEPTH}")
    item_type = reader.u32(f"item type of {key!r}")
    count = reader.u64(f"length of {key!r}")
    if count > MAX_ARRAY_ITEMS:
        raise InvalidModelFile(
            f"array {key!r} claims {count} items, over the limit of {MAX_ARRAY_ITEMS}"
        )
    item_bytes = _min_value_bytes(item_type, key)
    if count * item_bytes > reader.remaining:
        raise InvalidModelFile(
            f"truncated at byte {reader.size}: array {key!r} claims {count} items, "
            f"the file has room for at most {reader.remaining // item_bytes}"
        )
    if item_type in _SCALARS:
        reader.skip(count * item_bytes, f"items of {key!r}")
    elif item_type == _STRING:
        reader.skip_strings(count, repr(key))
    else:
        for _ in range(count):
            _skip_array(reader, key, depth + 1)


def _min_value_bytes(type_id: int, key: str) -> int:
    if type_id in _SCALARS:
        return _SCALARS[type_id].size
    if type_id == _STRING:
        return 8
    if type_id == _ARRAY:
        return 12
    raise InvalidModelFile(f"array {key!r} has unknown item type {type_id}")


def _alignment(meta: Mapping[str, object]) -> int:
    alignment = _int(meta, "general.alignment")
    if alignment is None:
        return DEFAULT_ALIGNMENT
    if alignment <= 0 or alignment & (alignment - 1):
        raise InvalidModelFile(f"general.alignment {alignment} is not a power of two")
    return alignment


def _align(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) // alignment * alignment


def _read_tensor_infos(reader: _Reader, count: int) -> list[_Tensor]:
    tensors: list[_Tensor] = []
    names: set[str] = set()
    for index in range(count):
        name = reader.text(f"name of tensor {index}", MAX_TENSOR_NAME)
        if name in names:
            raise InvalidModelFile(f"tensor {name!r} appears twice")
        names.add(name)
        n_dims = reader.u32(f"dimension count of tensor {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise InvalidModelFile(
                f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"
            )
        dims = tuple(reader.u64(f"shape of tensor {name!r}") for _ in range(n_dims))
        type_id = reader.u32(f"type of tensor {name!r}")
        tensor_type = TENSOR_TYPES.get(type_id)
        if tensor_type is None:
            raise InvalidModelFile(f"tensor {name!r} has unknown ggml type {type_id}")
        offset = reader.u64(f"offset of tensor {name!r}")
        tensors.append(_Tensor(name, dims, tensor_type, offset))
    return tensors


def _check_tensor_data(tensors: list[_Tensor], start: int, alignment: int, size: int) -> None:
    previous: _Tensor | None = None
    previous_end = start
    for tensor in sorted(tensors, key=lambda t: t.offset):
        block = tensor.type.block
        if tensor.dims[0] % block:
            raise InvalidModelFile(
                f"tensor {tensor.name!r} rows of {tensor.dims[0]} elements are not whole "
                f"{tensor.type.name} blocks of {block}"
            )
        if tensor.offset % alignment:
            raise InvalidModelFile(
                f"tensor {tensor.name!r} offset {tensor.offset} is not aligned to {alignment}"
            )
        begin = start + tensor.offset
        end = begin + tensor.n_elements // block * tensor.type.block_bytes
        if end > size:
            raise InvalidModelFile(
                f"tensor {tensor.name!r} data [{begin}, {end}) lies beyond the end of the file "
                f"(size {size})"
            )
        if previous is not None and begin < previous_end:
            raise InvalidModelFile(f"tensor {tensor.name!r} data overlaps tensor {previous.name!r}")
        previous, previous_end = tensor, end


def _summarize(
    version: int, meta: Mapping[str, object], tensors: list[_Tensor], size: int
) -> GGUFInfo:
    architecture = _text(meta, "general.architecture")
    if not architecture:
        raise InvalidModelFile("general.architecture is missing: not a llama.cpp model file")
    kind = _text(meta, "general.type") or "model"
    if kind not in ("model", "adapter"):
        raise InvalidModelFile(f"general.type {kind!r} is not supported (model or adapter)")
    return GGUFInfo(
        version=version,
        architecture=architecture,
        name=_text(meta, "general.name"),
        kind="adapter" if kind == "adapter" else "model",
        parameters=sum(t.n_elements for t in tensors),
        quantization=_quantization(meta, tensors),
        context_length=_int(meta, f"{architecture}.context_length"),
        chat_template=_text(meta, "tokenizer.chat_template"),
        license=_text(meta, "general.license"),
        adapter_type=_text(meta, "adapter.type"),
        lora_alpha=_float(meta, "adapter.lora.alpha"),
        tensors={t.name: t.dims for t in tensors},
        file_size=size,
    )


def _quantization(meta: Mapping[str, object], tensors: list[_Tensor]) -> str:
    file_type = _int(meta, "general.file_type")
    if file_type is not None and file_type in FILE_TYPES:
        return FILE_TYPES[file_type]
    weights: Counter[str] = Counter()
    for tensor in tensors:
        weights[tensor.type.name] += tensor.n_elements
    return weights.most_common(1)[0][0] if weights else "unknown"


def _text(meta: Mapping[str, object], key: str) -> str | None:
    value = meta.get(key)
    if value is None or isinstance(value, str):
        return value
    raise InvalidModelFile(f"metadata {key!r} should be a string")


def _int(meta: Mapping[str, object], key: str) -> int | None:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidModelFile(f"metadata {key!r} should be a non-negative integer")
    return value


def _float(meta: Mapping[str, object], key: str) -> float | None:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidModelFile(f"metadata {key!r} should be a number")
    return float(value)
