"""The model store: GGUF models, LoRA adapter sets and aliases under `home/models`.

Blobs are content-addressed (`blobs/sha256-<hex>.gguf`); names live in `manifest.json`.
Every change is checked in full before the manifest is replaced, so a refused import or a
crash leaves the store as it was. The packaged default model is registered by reference.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from inhouse.errors import InvalidModelFile, InvalidRequest, ModelNotFound
from inhouse.models.adapters import check_lora
from inhouse.models.blobs import Staged, blob_name, file_chunks, hash_file, place, staged
from inhouse.models.default import default_model_path
from inhouse.models.gguf import GGUFInfo
from inhouse.models.inspect import inspect_file
from inhouse.models.manifest import (
    Manifest,
    StoredAdapter,
    StoredAdapterSet,
    StoredModel,
    locked,
    read_manifest,
    write_manifest,
)
from inhouse.models.names import check_name, name_from_filename

DEFAULT_NAME = "smollm2"


class AdapterRef(NamedTuple):
    """A LoRA adapter GGUF and the scale to apply it with."""

    path: Path
    sha256: str
    scale: float


@dataclass(frozen=True)
class ModelRecord:
    """A servable name: a stored GGUF model, or (adapter-set) its base model plus LoRA adapters.

    `model` is the manifest's record of the GGUF to load and `path` where that file lies; for
    an adapter set both are its base model's, and `adapters` are applied on top in order.
    """

    name: str
    kind: Literal["model", "adapter-set"]
    path: Path
    model: StoredModel
    base: str | None = None
    adapters: tuple[AdapterRef, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def builtin(self) -> bool:
        """The packaged default model itself (an adapter set on it is not)."""
        return self.kind == "model" and self.model.builtin


class ModelStore:
    """Models, adapter sets and aliases under `home/models`; safe to share between processes."""

    def __init__(self, home: Path) -> None:
        self.root = home / "models"
        self.blobs = self.root / "blobs"

    def import_file(self, src: Path, name: str | None = None) -> ModelRecord:
        """Copy the GGUF model at `src` into the store as `name` (default: from the file name)."""
        name = check_name(name) if name is not None else name_from_filename(src.name)
        if not src.is_file():
            raise InvalidRequest(f"no such file: {src}", param="path")
        return self.import_stream(file_chunks(src), name, label=src.name)

    def import_stream(
        self, chunks: Iterable[bytes], name: str, *, label: str = "the download"
    ) -> ModelRecord:
        """Store the GGUF model made of `chunks` as `name`; the same bytes again are a no-op."""
        check_name(name)
        manifest = read_manifest(self.root)
        if manifest.kind_of(name) != "model":  # a model may be these very bytes: checked below
            self._check_free(manifest, name)  # before a long copy or download
        with staged(self.blobs, chunks) as blob:
            info = self._inspect(blob.path, label, load=True)
            if info.kind != "model":
                raise InvalidModelFile(
                    f"{label} is a LoRA adapter, not a model: add it with "
                    "`inhouse models adapter NAME --base MODEL --lora FILE`"
                )
            with locked(self.root):
                manifest = read_manifest(self.root)
                same = manifest.models.get(name)
                if same is not None and same.sha256 == blob.sha256:
                    return self._record(manifest, name)
                self._check_free(manifest, name)
                file = f"blobs/{blob_name(blob.sha256)}"
                manifest.models[name] = _stored_model(file, blob.sha256, info)
                self._commit(manifest, [blob])
                return self._record(manifest, name)

    def add_adapter_set(
        self, name: str, base: str, adapters: Sequence[tuple[Path, float]]
    ) -> ModelRecord:
        """Register `name` = model `base` + LoRA adapter files with their scales, all checked."""
        check_name(name)
        self._check_free(read_manifest(self.root), name)
        _check_adapter_args(adapters)
        base_record = self.resolve(base)
        if base_record.kind != "model":
            raise InvalidRequest(f"the base must be a model; {base!r} is an adapter set")
        base_info = self._inspect(base_record.path, base_record.name)
        with ExitStack() as stack:
            blobs: list[Staged] = []
            for file, _ in adapters:
                blob = stack.enter_context(staged(self.blobs, file_chunks(file)))
                check_lora(self._inspect(blob.path, file.name), base_info, file.name, base)
                blobs.append(blob)
            with locked(self.root):
                manifest = read_manifest(self.root)
                self._check_free(manifest, name)
                current = manifest.models.get(base_record.name)
                if current is None or current.sha256 != base_record.model.sha256:
                    raise InvalidRequest(f"{base!r} changed while the adapters were checked")
                manifest.adapter_sets[name] = StoredAdapterSet(
                    base_record.name,
                    tuple(
                        StoredAdapter(f"blobs/{blob_name(b.sha256)}", b.sha256, b.size, scale)
                        for b, (_, scale) in zip(blobs, adapters, strict=True)
                    ),
                )
                self._commit(manifest, blobs)
                return self._record(manifest, name)

    def alias(self, alias: str, target: str) -> ModelRecord:
        """Point `alias` at `target` (model, adapter set or alias); returns what it resolves to."""
        check_name(alias, "alias")
        with locked(self.root):
            manifest = read_manifest(self.root)
            kind = manifest.kind_of(alias)
            if kind in ("model", "adapter set"):
                raise InvalidRequest(f"{alias!r} is a {kind}; an alias may not shadow it")
            if manifest.kind_of(target) is None:
                raise ModelNotFound(_not_found(manifest, target))
            chain = manifest.chain(target)
            if alias in chain:
                loop = [alias, *chain[: chain.index(alias) + 1]]
                raise InvalidRequest(f"alias loop refused: {' -> '.join(loop)}")
            if chain[-1] in manifest.aliases:
                raise InvalidRequest(f"alias chain from {target!r} is too long or loops")
            manifest.aliases[alias] = target
            write_manifest(self.root, manifest)
            return self._record(manifest, chain[-1])

    def unalias(self, alias: str) -> None:
        """Remove `alias`; refused while another alias points to it."""
        with locked(self.root):
            manifest = read_manifest(self.root)
            if alias not in manifest.aliases:
                kind = manifest.kind_of(alias)
                if kind is None:
                    raise ModelNotFound(f"no alias named {alias!r}")
                raise InvalidRequest(f"{alias!r} is a {kind}, not an alias")
            pointing = sorted(a for a, t in manifest.aliases.items() if t == alias)
            if pointing:
                raise InvalidRequest(
                    f"alias {pointing[0]!r} points to {alias!r}; retarget or unalias it first"
                )
            del manifest.aliases[alias]
            write_manifest(self.root, manifest)

    def remove(self, name: str) -> tuple[str, ...]:
        """Remove model or adapter set `name` and the aliases that led to it (returned)."""
        with locked(self.root):
            manifest = read_manifest(self.root)
            kind = manifest.kind_of(name)
            if kind is None:
                raise ModelNotFound(_not_found(manifest, name))
            if kind == "alias":
                raise InvalidRequest(
                    f"{name!r} is an alias of {manifest.aliases[name]!r}; "
                    f"remove it with `inhouse models unalias {name}`"
                )
            model = manifest.models.get(name)
            if model is not None and model.builtin:
                raise InvalidRequest(f"{name!r} is the built-in default model and can't be removed")
            users = sorted(n for n, s in manifest.adapter_sets.items() if s.base == name)
            if users:
                raise InvalidRequest(
                    f"{name!r} is the base of adapter set(s) {', '.join(users)}; remove those first"
                )
            removed = manifest.aliases_of(name)
            for alias in removed:
                del manifest.aliases[alias]
            manifest.models.pop(name, None)
            manifest.adapter_sets.pop(name, None)
            write_manifest(self.root, manifest)
            self._collect_garbage(manifest)
            return tuple(removed)

    def list(self) -> builtins.list[ModelRecord]:
        """Every model and adapter set, by name, each with the aliases that lead to it."""
        manifest = read_manifest(self.root)
        return [
            self._record(manifest, n) for n in sorted([*manifest.models, *manifest.adapter_sets])
        ]

    def names(self) -> builtins.list[str]:
        """Every name a client may call: models, adapter sets and aliases, sorted."""
        manifest = read_manifest(self.root)
        return sorted([*manifest.models, *manifest.adapter_sets, *manifest.aliases])

    def aliases(self) -> dict[str, str]:
        """Every alias and the name it points to directly."""
        return dict(read_manifest(self.root).aliases)

    def resolve(self, name: str) -> ModelRecord:
        """The model or adapter set that `name` (or the alias chain from it) names."""
        manifest = read_manifest(self.root)
        final = manifest.chain(name)[-1]
        if final in manifest.models or final in manifest.adapter_sets:
            return self._record(manifest, final)
        raise ModelNotFound(_not_found(manifest, name))

    def ensure_default(self) -> ModelRecord:
        """Register the packaged default model by reference, once; raises DefaultModelMissing."""
        path = default_model_path().resolve()
        current = read_manifest(self.root).models.get(DEFAULT_NAME)
        if current is not None and (
            not current.builtin
            or (current.file == str(path) and current.size == path.stat().st_size)
        ):
            return self.resolve(DEFAULT_NAME)
        sha256, _ = hash_file(path)
        info = self._inspect(path, path.name)
        with locked(self.root):
            manifest = read_manifest(self.root)
            kind = manifest.kind_of(DEFAULT_NAME)
            existing = manifest.models.get(DEFAULT_NAME)
            if kind is None or (existing is not None and existing.builtin):
                stored = _stored_model(str(path), sha256, info, builtin=True)
                manifest.models[DEFAULT_NAME] = stored
                write_manifest(self.root, manifest)
        return self.resolve(DEFAULT_NAME)

    def _inspect(self, path: Path, label: str, *, load: bool = False) -> GGUFInfo:
        """Inspect `path` in the limited child; with `load`, also check llama.cpp loads it."""
        try:
            return inspect_file(path, load=load)
        except InvalidModelFile as exc:
            raise InvalidModelFile(f"{label}: {exc.message}", code=exc.code) from exc

    def _check_free(self, manifest: Manifest, name: str) -> None:
        kind = manifest.kind_of(name)
        if kind is not None:
            raise InvalidRequest(
                f"{name!r} is already taken by a {kind}; choose another name "
                f"or remove it first (`inhouse models {'unalias' if kind == 'alias' else 'rm'} "
                f"{name}`)",
                code="name_taken",
            )

    def _commit(self, manifest: Manifest, blobs: Sequence[Staged]) -> None:
        """Place staged blobs and write the manifest; on failure, undo the blobs placed."""
        placed: builtins.list[Path] = []
        try:
            for blob in blobs:
                if place(blob, self.blobs):
                    placed.append(self.blobs / blob_name(blob.sha256))
            write_manifest(self.root, manifest)
        except BaseException:
            for path in placed:
                path.unlink(missing_ok=True)
            raise

    def _collect_garbage(self, manifest: Manifest) -> None:
        used = manifest.blob_files()
        for path in self.blobs.glob("sha256-*.gguf"):
            if f"blobs/{path.name}" not in used:
                path.unlink(missing_ok=True)

    def _path(self, file: str) -> Path:
        path = Path(file)
        return path if path.is_absolute() else self.root / path

    def _record(self, manifest: Manifest, name: str) -> ModelRecord:
        aliases = tuple(manifest.aliases_of(name))
        adapter_set = manifest.adapter_sets.get(name)
        model = manifest.models[adapter_set.base if adapter_set else name]
        path = self._path(model.file)
        if adapter_set is None:
            return ModelRecord(name, "model", path, model, aliases=aliases)
        adapters = tuple(
            AdapterRef(self._path(a.file), a.sha256, a.scale) for a in adapter_set.adapters
        )
        return ModelRecord(name, "adapter-set", path, model, adapter_set.base, adapters, aliases)


def _stored_model(file: str, sha256: str, info: GGUFInfo, *, builtin: bool = False) -> StoredModel:
    return StoredModel(
        file=file,
        sha256=sha256,
        size=info.file_size,
        architecture=info.architecture,
        display_name=info.name,
        parameters=info.parameters,
        quantization=info.quantization,
        context_length=info.context_length,
        chat_template=info.chat_template,
        license=info.license,
        builtin=builtin,
    )


def _check_adapter_args(adapters: Sequence[tuple[Path, float]]) -> None:
    if not adapters:
        raise InvalidRequest("an adapter set needs at least one LoRA adapter file (--lora)")
    for file, scale in adapters:
        if not math.isfinite(scale):
            raise InvalidRequest(f"the scale of {file.name} must be a finite number, not {scale}")
        if not file.is_file():
            raise InvalidRequest(f"no such file: {file}", param="lora")


def _not_found(manifest: Manifest, name: str) -> str:
    names = sorted([*manifest.models, *manifest.adapter_sets])
    available = ", ".join(names) if names else "none; import one with `inhouse models import`"
    aliases = f" (aliases: {', '.join(sorted(manifest.aliases))})" if manifest.aliases else ""
    return f"model {name!r} not found; available: {available}{aliases}"
