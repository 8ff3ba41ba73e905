"""The model store's manifest: one JSON file, replaced atomically by writers holding a lock.

Readers need no lock: the file is only ever replaced whole (temp file + rename), so a reader
sees the old manifest or the new one, never half of one. Writers take an exclusive `fcntl`
lock on a separate lock file for the whole read-modify-write.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inhouse.errors import ModelStoreCorrupt
from inhouse.models.blobs import fsync_dir

MANIFEST = "manifest.json"
VERSION = 1
MAX_ALIAS_CHAIN = 16


@dataclass(frozen=True)
class StoredModel:
    """A GGUF model; `file` is relative to the models folder, or absolute for a builtin."""

    file: str
    sha256: str
    size: int
    architecture: str
    display_name: str | None
    parameters: int
    quantization: str
    context_length: int | None
    chat_template: str | None
    license: str | None
    builtin: bool = False


@dataclass(frozen=True)
class StoredAdapter:
    """One LoRA adapter GGUF of an adapter set, applied with `scale`."""

    file: str
    sha256: str
    size: int
    scale: float


@dataclass(frozen=True)
class StoredAdapterSet:
    """A base model (by model name, never an alias) plus LoRA adapters."""

    base: str
    adapters: tuple[StoredAdapter, ...]


@dataclass
class Manifest:
    """Every name in the store: models, adapter sets and aliases share one namespace."""

    models: dict[str, StoredModel] = field(default_factory=dict)
    adapter_sets: dict[str, StoredAdapterSet] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def kind_of(self, name: str) -> str | None:
        """'model', 'adapter set', 'alias', or None when the name is free."""
        if name in self.models:
            return "model"
        if name in self.adapter_sets:
            return "adapter set"
        return "alias" if name in self.aliases else None

    def chain(self, name: str) -> list[str]:
        """`name` followed through aliases: [name, ..., final name]; stops at a repeat."""
        chain = [name]
        while chain[-1] in self.aliases and len(chain) <= MAX_ALIAS_CHAIN:
            following = self.aliases[chain[-1]]
            chain.append(following)
            if following in chain[:-1]:
                break
        return chain

    def aliases_of(self, name: str) -> list[str]:
        """Every alias whose chain leads to `name`, sorted."""
        return sorted(a for a in self.aliases if name in self.chain(a)[1:])

    def blob_files(self) -> set[str]:
        """The store-relative files that records still use."""
        files = {m.file for m in self.models.values() if not m.builtin}
        for adapter_set in self.adapter_sets.values():
            files.update(a.file for a in adapter_set.adapters)
        return files

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": VERSION,
                "models": {n: dataclasses.asdict(m) for n, m in sorted(self.models.items())},
                "adapter_sets": {
                    n: dataclasses.asdict(s) for n, s in sorted(self.adapter_sets.items())
                },
                "aliases": dict(sorted(self.aliases.items())),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data: dict[str, Any] = json.loads(text)
        if data["version"] != VERSION:
            raise ValueError(f"manifest version {data['version']} is not {VERSION}")
        return cls(
            models={n: StoredModel(**m) for n, m in data["models"].items()},
            adapter_sets={
                n: StoredAdapterSet(s["base"], tuple(StoredAdapter(**a) for a in s["adapters"]))
                for n, s in data["adapter_sets"].items()
            },
            aliases={str(a): str(t) for a, t in data["aliases"].items()},
        )


def read_manifest(root: Path) -> Manifest:
    """The current manifest under `root` (empty when there is none yet)."""
    path = root / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Manifest()
    try:
        return Manifest.from_json(text)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelStoreCorrupt(
            f"{path} is not a valid model manifest ({exc}); restore it from a backup"
        ) from exc


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Replace the manifest atomically and durably; call it while holding `locked(root)`."""
    fd, name = tempfile.mkstemp(dir=root, prefix=".manifest-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(manifest.to_json())
            out.flush()
            os.fsync(out.fileno())
        os.replace(name, root / MANIFEST)
    finally:
        Path(name).unlink(missing_ok=True)
    fsync_dir(root)


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the store's exclusive writer lock (other writers, in any process, wait)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
