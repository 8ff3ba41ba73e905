"""`inhouse models list`."""

from __future__ import annotations

import typer

from inhouse.config import Settings
from inhouse.models.default import DefaultModelMissing, default_model_path


def list_models(settings: Settings) -> None:
    engine = settings.engine
    try:
        path = engine.model_path or default_model_path()
    except DefaultModelMissing as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    if not path.is_file():
        typer.secho(f"error: model file not found: {path}", fg="red", err=True)
        raise typer.Exit(1)
    source = "configured" if engine.model_path else "embedded default"
    typer.echo(f"{'NAME':<16} {'SIZE':>8}  {'SOURCE':<18} FILE")
    size = f"{path.stat().st_size / 1e6:.0f} MB"
    typer.echo(f"{engine.model_name:<16} {size:>8}  {source:<18} {path}")
