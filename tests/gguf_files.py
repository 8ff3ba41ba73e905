"""Tiny GGUF files for tests: valid ones made with `gguf.GGUFWriter`, hostile ones patched by hand.

The model is a llama-architecture toy that llama.cpp loads (import checks that): hidden size 8,
one block, two heads, a 16-token SentencePiece vocabulary, F32 tensors. Shapes are numpy
(rows, columns), which GGUF stores reversed: ne = (columns, rows).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from gguf import GGUFWriter

SAFE_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
UNSAFE_TEMPLATE = "{{ cycler.__init__.__globals__ }}"
# issue 13: templates that loop or build without bound; refused at import by a probe render
LOOPING_TEMPLATE = (
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
)
STRING_BOMB_TEMPLATE = "{{ 'ab ' * 30000000 }}"
# ChatML that blows up only on a message "boom": the import probe passes, that request fails
BOMB_ON_TRIGGER = (
    "{% for m in messages %}"
    "{% if m['content'] == 'boom' %}" + LOOPING_TEMPLATE + "{% endif %}"
    "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# numpy shapes of the toy model's tensors
MODEL_TENSORS: dict[str, tuple[int, ...]] = {
    "token_embd.weight": (16, 8),
    "blk.0.attn_norm.weight": (8,),
    "blk.0.attn_q.weight": (8, 8),
    "blk.0.attn_k.weight": (8, 8),
    "blk.0.attn_v.weight": (8, 8),
    "blk.0.attn_output.weight": (8, 8),
    "blk.0.ffn_norm.weight": (8,),
    "blk.0.ffn_gate.weight": (12, 8),
    "blk.0.ffn_down.weight": (8, 12),
    "blk.0.ffn_up.weight": (12, 8),
    "output_norm.weight": (8,),
}
MODEL_PARAMETERS = 16 * 8 + 8 + 4 * 8 * 8 + 8 + 3 * 12 * 8 + 8
TOKENS = ["<unk>", "<s>", "</s>", "a", "b", "c", *(f"t{i}" for i in range(10))]
HUGE = 2**63
HOSTILE_CASES = (
    "not gguf",
    "truncated",
    "2^63 tensors",
    "2^63 kv pairs",
    "2^63 key length",
    "2^63 string",
    "2^63 array items",
    "tensor beyond the end",
    "unsafe template",
    "looping template",
    "template building 90 MB",
)


def write_model(
    path: Path,
    *,
    arch: str = "llama",
    template: str | None = SAFE_TEMPLATE,
    context_length: int = 2048,
    seed: int = 0,
    head_count: int = 2,
) -> Path:
    """A small valid GGUF model; a different `seed` gives different bytes. `head_count=0`
    makes a file that parses but that llama.cpp refuses to load (issue 13)."""
    writer = GGUFWriter(path, arch)
    writer.add_name("tiny test model")
    writer.add_license("mit")
    writer.add_context_length(context_length)
    writer.add_file_type(0)
    writer.add_embedding_length(8)
    writer.add_block_count(1)
    writer.add_feed_forward_length(12)
    writer.add_head_count(head_count)
    writer.add_head_count_kv(head_count)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(TOKENS)
    writer.add_token_scores([0.0] * len(TOKENS))
    if template is not None:
        writer.add_chat_template(template)
    rng = np.random.default_rng(seed)
    for name, shape in MODEL_TENSORS.items():
        writer.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    _finish(writer)
    return path


def write_lora(
    path: Path,
    *,
    arch: str = "llama",
    targets: dict[str, tuple[int, int]] | None = None,
    rank: int = 2,
) -> Path:
    """A LoRA adapter GGUF; `targets` maps base tensor -> its numpy shape (n_out, n_in)."""
    targets = targets if targets is not None else {"blk.0.attn_q.weight": (8, 8)}
    writer = GGUFWriter(path, arch)
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", 16.0)
    for name, (n_out, n_in) in targets.items():
        writer.add_tensor(f"{name}.lora_a", np.ones((rank, n_in), dtype=np.float32))
        writer.add_tensor(f"{name}.lora_b", np.zeros((n_out, rank), dtype=np.float32))
    _finish(writer)
    return path


def _finish(writer: GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def patch_u64(path: Path, offset: int, value: int) -> Path:
    """Overwrite the little-endian u64 at `offset`."""
    data = bytearray(path.read_bytes())
    data[offset : offset + 8] = struct.pack("<Q", value)
    path.write_bytes(bytes(data))
    return path


def value_length_offset(path: Path, key: str) -> int:
    """Where the length of the string value of metadata `key` is stored."""
    # key bytes, then the value type (u32), then the value's u64 length
    return path.read_bytes().index(key.encode()) + len(key) + 4


def tensor_offset_offset(path: Path, name: str) -> int:
    """Where the data offset of tensor `name` is stored in its tensor info."""
    data = path.read_bytes()
    at = data.rindex(name.encode()) + len(name)
    (n_dims,) = struct.unpack_from("<I", data, at)
    return at + 4 + 8 * n_dims + 4


def hostile_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Hostile variants of the toy model: name -> (file, words the refusal must contain)."""
    folder.mkdir(parents=True, exist_ok=True)

    def model(name: str, **kwargs: str) -> Path:
        return write_model(folder / f"{name}.gguf", **kwargs)  # type: ignore[arg-type]

    truncated = folder / "truncated.gguf"
    truncated.write_bytes(model("whole").read_bytes()[:900])
    not_gguf = folder / "not-gguf.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 this is a zip file, not a model" * 4)
    key_string = model("key-string")
    patch_u64(key_string, 24, HUGE)
    template = model("string")
    patch_u64(template, value_length_offset(template, "tokenizer.chat_template"), HUGE)
    tokens = model("array")
    patch_u64(tokens, value_length_offset(tokens, "tokenizer.ggml.tokens") + 4, HUGE)
    beyond = model("beyond")
    patch_u64(beyond, tensor_offset_offset(beyond, "output_norm.weight"), 1 << 40)
    return {
        "not gguf": (not_gguf, "not a GGUF file"),
        "truncated": (truncated, "truncated at byte 900"),
        "2^63 tensors": (patch_u64(model("tensors"), 8, HUGE), f"claims {HUGE} tensors"),
        "2^63 kv pairs": (patch_u64(model("kv"), 16, HUGE), f"claims {HUGE} key-value pairs"),
        "2^63 key length": (key_string, f"claims {HUGE} bytes"),
        "2^63 string": (template, f"claims {HUGE} bytes"),
        "2^63 array items": (tokens, f"claims {HUGE} items"),
        "tensor beyond the end": (beyond, "lies beyond the end of the file"),
        "unsafe template": (model("unsafe", template=UNSAFE_TEMPLATE), "chat template"),
        "looping template": (model("looping", template=LOOPING_TEMPLATE), "loop iterations"),
        "template building 90 MB": (
            model("string-bomb", template=STRING_BOMB_TEMPLATE),
            "90000000 characters",
        ),
    }
