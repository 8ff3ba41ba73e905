"""The GGUF inspector: what it reads from good files, and how it refuses hostile ones."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from inhouse.errors import InvalidModelFile
from inhouse.models.gguf import read_gguf
from inhouse.models.inspect import inspect_file
from tests.conftest import need
from tests.gguf_files import (
    HOSTILE_CASES,
    MODEL_PARAMETERS,
    SAFE_TEMPLATE,
    hostile_files,
    tensor_offset_offset,
    write_lora,
    write_model,
)


def test_a_tiny_model_is_described(tmp_path: Path) -> None:
    path = write_model(tmp_path / "tiny.gguf")
    info = read_gguf(path)
    assert (info.architecture, info.kind, info.name) == ("llama", "model", "tiny test model")
    assert info.parameters == MODEL_PARAMETERS
    assert (info.quantization, info.context_length, info.license) == ("F32", 2048, "mit")
    assert info.chat_template == SAFE_TEMPLATE
    assert info.tensors["blk.0.ffn_up.weight"] == (8, 12)  # ggml order: (n_in, n_out)
    assert info.file_size == path.stat().st_size


def test_a_lora_adapter_is_described(tmp_path: Path) -> None:
    info = read_gguf(write_lora(tmp_path / "lora.gguf"))
    assert (info.kind, info.adapter_type, info.lora_alpha) == ("adapter", "lora", 16.0)
    assert info.tensors == {
        "blk.0.attn_q.weight.lora_a": (8, 2),
        "blk.0.attn_q.weight.lora_b": (2, 8),
    }
    assert info.quantization == "F32"  # no general.file_type: the dominant tensor type


def test_the_child_process_reports_what_the_parser_reads(tmp_path: Path) -> None:
    path = write_model(tmp_path / "tiny.gguf")
    assert inspect_file(path) == read_gguf(path)


def test_the_default_model_is_smollm2_135m_q4_1() -> None:
    from inhouse.models.default import DefaultModelMissing, default_model_path

    try:
        path = default_model_path()
    except DefaultModelMissing as exc:
        need(False, str(exc))
    info = inspect_file(path)
    assert (info.architecture, info.quantization, info.context_length) == ("llama", "Q4_1", 8192)
    assert round(info.parameters / 1e6, 1) == 134.5
    assert info.chat_template is not None and "<|im_start|>" in info.chat_template


@pytest.mark.parametrize("case", HOSTILE_CASES)
def test_hostile_files_are_refused_quickly_with_a_clear_reason(tmp_path: Path, case: str) -> None:
    path, words = hostile_files(tmp_path)[case]
    started = time.monotonic()
    with pytest.raises(InvalidModelFile) as refused:
        inspect_file(path)
    assert time.monotonic() - started < 5
    assert words in refused.value.message


def test_a_file_cut_inside_the_header_says_where(tmp_path: Path) -> None:
    path = tmp_path / "cut.gguf"
    path.write_bytes(write_model(tmp_path / "whole.gguf").read_bytes()[:10])
    with pytest.raises(InvalidModelFile, match="truncated at byte 10"):
        read_gguf(path)


def test_unknown_tensor_types_and_versions_are_refused(tmp_path: Path) -> None:
    path = write_model(tmp_path / "type.gguf")
    data = bytearray(path.read_bytes())
    type_at = tensor_offset_offset(path, "output_norm.weight") - 4
    data[type_at : type_at + 4] = struct.pack("<I", 99)
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidModelFile, match="unknown ggml type 99"):
        read_gguf(path)
    data[4:8] = struct.pack("<I", 1)
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidModelFile, match="version 1 is not supported"):
        read_gguf(path)


def test_an_inspection_past_its_time_limit_is_killed_and_refused(tmp_path: Path) -> None:
    path = write_model(tmp_path / "tiny.gguf")
    with pytest.raises(InvalidModelFile, match="took longer than"):
        inspect_file(path, timeout_s=0.001)
