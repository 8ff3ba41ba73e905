"""/admin/models: the model store's imports and aliases over HTTP, as `inhouse models` does.

Those who read the system's settings (admins, auditors) see the store's aliases and import
folder; model managers (admins) change them. Imports read only GGUF files that lie directly in
`models.import_dir`, a folder the operator chose on the server: the web app names a file
there, never a path. Every change is audited with the caller's name and address, as the CLI
audits it with the operator's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from inhouse.api.deps import app_state
from inhouse.api.guard import client_ip, guard, principal_of
from inhouse.auth.policy import Permission
from inhouse.errors import InvalidRequest, NotFound
from inhouse.models.resolver import StoreResolver
from inhouse.models.store import ModelRecord, ModelStore

router = APIRouter(prefix="/admin/models")
READ = [guard(Permission.SYSTEM_READ)]
MANAGE = [guard(Permission.MODEL_MANAGE)]
SUFFIX = ".gguf"


class NewAlias(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str = Field(min_length=1, max_length=128)
    target: str = Field(min_length=1, max_length=128)


class NewImport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str = Field(min_length=1, max_length=255, description="A file in models.import_dir.")
    name: str | None = Field(default=None, min_length=1, max_length=128)


def _store(request: Request) -> ModelStore:
    """The server's model store; a server started on one file (`--model`) has none."""
    resolver = app_state(request).resolver
    if not isinstance(resolver, StoreResolver):
        raise InvalidRequest(
            "this server serves one model file (inhouse serve --model): it has no model store "
            "to import into or to alias in",
            code="no_model_store",
        )
    return resolver.store


def _import_dir(request: Request) -> Path | None:
    folder = app_state(request).settings.models.import_dir
    return folder.resolve() if folder is not None else None


def _importable(folder: Path) -> list[dict[str, Any]]:
    """The GGUF files lying directly in `folder` (links out of it are left out)."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.suffix.lower() == SUFFIX and _inside(p, folder)]
    return [{"file": p.name, "size": p.stat().st_size} for p in sorted(files)]


def _inside(path: Path, folder: Path) -> bool:
    resolved = path.resolve()
    return resolved.parent == folder and resolved.is_file()


def _source(request: Request, file: str) -> Path:
    """The file `file` names in the import folder; refused if it names anything else."""
    folder = _import_dir(request)
    if folder is None:
        raise InvalidRequest(
            "imports over HTTP are off: set models.import_dir, or use `inhouse models import`",
            param="file",
            code="imports_off",
        )
    if (
        "\x00" in file
        or Path(file).name != file
        or file.startswith(".")
        or not file.lower().endswith(SUFFIX)
    ):
        raise InvalidRequest("name a .gguf file of the import folder, not a path", param="file")
    path = folder / file
    if not _inside(path, folder):
        raise NotFound(f"no file {file!r} in the import folder")
    return path.resolve()  # the file checked is the file opened, whatever a link does next


def _audit(request: Request, action: str, target: str, **detail: Any) -> None:
    state = app_state(request)
    with state.db.write() as session:
        actor = principal_of(request).actor
        state.audit.record(session, actor, action, target, detail, client_ip(request))


def _record_view(record: ModelRecord) -> dict[str, Any]:
    model = record.model
    return {
        "name": record.name,
        "kind": record.kind,
        "aliases": list(record.aliases),
        "size": model.size,
        "family": model.architecture,
        "parameters": model.parameters,
        "quantization": model.quantization,
        "context_length": model.context_length,
        "sha256": model.sha256,
    }


@router.get("/store", dependencies=READ)
def store_view(request: Request) -> dict[str, Any]:
    """Whether there is a store, its aliases, and the files an admin may import now."""
    resolver = app_state(request).resolver
    store = resolver.store if isinstance(resolver, StoreResolver) else None
    folder = _import_dir(request)
    return {
        "store": store is not None,
        "aliases": store.aliases() if store is not None else {},
        "import_dir": str(folder) if folder is not None else None,
        "importable": _importable(folder) if folder is not None and store is not None else [],
    }


@router.post("/import", status_code=201, dependencies=MANAGE)
async def import_model(body: NewImport, request: Request) -> dict[str, Any]:
    """Copy a GGUF of the import folder into the store, checked as `inhouse models import`
    checks it (inspected, then loaded by llama.cpp in a child process)."""
    store, source = _store(request), _source(request, body.file)
    record = await anyio.to_thread.run_sync(store.import_file, source, body.name)
    _audit(request, "model.import", record.name, sha256=record.model.sha256, file=source.name)
    return _record_view(record)


@router.post("/aliases", status_code=201, dependencies=MANAGE)
def set_alias(body: NewAlias, request: Request) -> dict[str, Any]:
    """Point an alias at a model, adapter set or alias; apps calling it follow at once."""
    record = _store(request).alias(body.alias, body.target)
    _audit(request, "model.alias", body.alias, model=record.name)
    return {"alias": body.alias, "target": body.target, "model": record.name}


@router.delete("/aliases/{name}", dependencies=MANAGE)
def remove_alias(name: str, request: Request) -> dict[str, Any]:
    _store(request).unalias(name)
    _audit(request, "model.unalias", name)
    return {"alias": name, "deleted": True}
