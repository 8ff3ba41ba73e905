"""`inhouse models ...`: the model store from the terminal; errors exit 2 with a message."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer

from inhouse.config import Settings
from inhouse.errors import InhouseError
from inhouse.models.default import DefaultModelMissing
from inhouse.models.store import ModelRecord, ModelStore

EXIT_REFUSED = 2


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(EXIT_REFUSED)


@contextmanager
def _refusals() -> Iterator[None]:
    """Turn the store's typed errors into `error: ...` on stderr and exit status 2."""
    try:
        yield
    except InhouseError as exc:
        _fail(exc.message)
    except (DefaultModelMissing, OSError) as exc:
        _fail(str(exc))


def _open(settings: Settings) -> ModelStore:
    store = ModelStore(settings.home)
    try:
        store.ensure_default()
    except DefaultModelMissing as exc:
        typer.secho(f"warning: {exc}", fg="yellow", err=True)
    return store


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def _row(record: ModelRecord) -> list[str]:
    model = record.model
    quant = model.quantization
    if record.kind == "adapter-set":
        quant += f" +{len(record.adapters)} LoRA"
    return [
        record.name,
        ",".join(record.aliases) or "-",
        _size(model.size),
        quant,
        str(model.context_length or "-"),
        _count(model.parameters),
        model.sha256[:12],
    ]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        typer.echo("  ".join(cells).rstrip())


def list_models(settings: Settings) -> None:
    with _refusals():
        records = _open(settings).list()
    header = ["NAME", "ALIASES", "SIZE", "QUANT", "CTX", "PARAMS", "SHA256"]
    _table(header, [_row(r) for r in records])


def _summary(record: ModelRecord) -> str:
    model = record.model
    return (
        f"{record.name}: {model.architecture}, {_count(model.parameters)} parameters, "
        f"{model.quantization}, context {model.context_length or '?'}, "
        f"sha256 {model.sha256[:12]}"
    )


def _audit(settings: Settings, action: str, target: str, **detail: object) -> None:
    """Model store changes are security events too (what can run here, under which name)."""
    from inhouse.cli.context import audited_store, cli_actor

    with audited_store(settings) as (db, trail), db.write() as session:
        trail.record(session, cli_actor(), action, target, dict(detail))


def import_model(settings: Settings, path: Path, name: str | None) -> None:
    with _refusals():
        record = _open(settings).import_file(path, name)
    _audit(settings, "model.import", record.name, sha256=record.model.sha256, file=path.name)
    typer.echo(f"imported {_summary(record)}")


def add_adapter_set(
    settings: Settings, name: str, base: str, loras: Sequence[Path], scales: Sequence[float]
) -> None:
    if scales and len(scales) != len(loras):
        _fail(f"give one --scale per --lora ({len(loras)} adapters, {len(scales)} scales)")
    pairs = list(zip(loras, scales or [1.0] * len(loras), strict=True))
    with _refusals():
        record = _open(settings).add_adapter_set(name, base, pairs)
    _audit(settings, "model.adapter_set", record.name, base=base, loras=[p.name for p, _ in pairs])
    typer.echo(f"added {record.name}: {base} + " + ", ".join(f"{p.name}*{s:g}" for p, s in pairs))


def alias_model(settings: Settings, alias: str, target: str) -> None:
    with _refusals():
        record = _open(settings).alias(alias, target)
    _audit(settings, "model.alias", alias, model=record.name)
    typer.echo(f"{alias} -> {target}" + (f" ({record.name})" if record.name != target else ""))


def unalias_model(settings: Settings, alias: str) -> None:
    with _refusals():
        _open(settings).unalias(alias)
    _audit(settings, "model.unalias", alias)
    typer.echo(f"removed alias {alias}")


def remove_model(settings: Settings, name: str) -> None:
    with _refusals():
        removed = _open(settings).remove(name)
    _audit(settings, "model.remove", name, aliases=list(removed))
    typer.echo(f"removed {name}")
    if removed:
        typer.echo(f"removed the aliases that pointed to it: {', '.join(removed)}")


def pull_model(settings: Settings, url: str, name: str | None) -> None:
    from inhouse.airgap import guard_from_settings
    from inhouse.models.pull import pull

    guard_from_settings(settings)  # only the allowed hosts are reachable, at the socket too
    with _refusals():
        record = pull(_open(settings), settings.models, url, name)
    _audit(settings, "model.pull", record.name, sha256=record.model.sha256, url=url.split("?")[0])
    typer.echo(f"pulled {_summary(record)}")


def show_model(settings: Settings, name: str, template: bool) -> None:
    with _refusals():
        record = _open(settings).resolve(name)
    model = record.model
    if template:
        typer.echo(model.chat_template or "")
        return
    facts = {
        "name": record.name if record.name == name else f"{record.name} (via alias {name})",
        "kind": record.kind + (" (built-in)" if record.builtin else ""),
        "architecture": model.architecture,
        "title": model.display_name or "-",
        "parameters": f"{model.parameters:,}",
        "quantization": model.quantization,
        "context length": str(model.context_length or "-"),
        "license": model.license or "-",
        "chat template": f"{len(model.chat_template)} characters" if model.chat_template else "-",
        "aliases": ", ".join(record.aliases) or "-",
        "size": _size(model.size),
        "sha256": model.sha256,
        "file": str(record.path),
    }
    if record.kind == "adapter-set":
        facts["base"] = record.base or "-"
        for index, adapter in enumerate(record.adapters):
            facts[f"lora {index}"] = f"{adapter.path} (scale {adapter.scale:g})"
    width = max(map(len, facts))
    for key, value in facts.items():
        typer.echo(f"{key + ':':<{width + 1}} {value}")
