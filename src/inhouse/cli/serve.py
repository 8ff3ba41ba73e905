"""`inhouse serve`: load the model, make sure a key exists, print the banner, run."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from inhouse.airgap import guard_from_settings
from inhouse.auth.bootstrap import ensure_admin
from inhouse.cli.server import is_loopback, run_server
from inhouse.config import Settings
from inhouse.models.default import DefaultModelMissing, default_model_path
from inhouse.store.private import private_dir

if TYPE_CHECKING:
    from inhouse.engine.pool import ModelSpec


IMPORT_COMMAND = "inhouse models import ./model.gguf --name my-model"


def _refuse(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


def model_lines(spec: ModelSpec, names: int) -> list[str]:
    """The banner's model lines; for the packaged default, that it is a demo and what to do."""
    size_mb = spec.path.stat().st_size / 1e6 if spec.path.is_file() else 0
    lines = [
        f"  model     {spec.name}  ({spec.path.name}, {size_mb:.0f} MB); "
        f"{names} names in all (inhouse models list)"
    ]
    if _is_packaged_default(spec.path):
        lines += [
            "            a 135M demo model for trying the API: expect odd, often wrong answers.",
            f"            For real work import a GGUF model: {IMPORT_COMMAND}",
        ]
    return lines


def _is_packaged_default(path: Path) -> bool:
    try:
        return path.resolve() == default_model_path().resolve()
    except DefaultModelMissing:
        return False


def start(settings: Settings, *, new_admin_key: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = settings.server
    if not settings.auth.enabled and not is_loopback(server.host):
        _refuse(f"--no-auth is only allowed on a loopback address, not {server.host}")
    private_dir(settings.home)
    air_gap = guard_from_settings(settings)  # before anything else can open a socket

    from inhouse.api.app import create_app, default_resolver

    try:
        resolver = default_resolver(settings)
        spec = resolver.default()
        app = create_app(settings, resolver=resolver)
    except (DefaultModelMissing, OSError) as exc:
        _refuse(str(exc))
        return
    state = app.state.inhouse
    new_key = ensure_admin(state.db, state.audit, new_key=new_admin_key)
    url = f"http://{server.host}:{server.port}"
    lines = [
        "",
        "  inhouse is running",
        f"  API       {url}/v1   (OpenAI-compatible)",
        f"  web app   {url}/   (a password to sign in: inhouse users passwd NAME)",
        *model_lines(spec, len(resolver.names())),
        f"  data dir  {settings.home}",
    ]
    allowed = ", ".join(air_gap.allow_list) or "nothing"
    lines.append(
        f"  air-gap   on: outbound connections refused except loopback (allowed: {allowed})"
    )
    if not settings.auth.enabled:
        lines.append("  auth      OFF (--no-auth): anyone on this machine can call the API")
    elif new_key:
        lines += [
            f"  admin key {new_key}",
            "            shown once, stored only as a hash: copy it now",
        ]
    else:
        lines.append("  admin key printed at first start (new one: --new-admin-key)")
    lines.append("")
    print("\n".join(lines), flush=True)
    if not settings.auth.enabled:
        typer.secho("WARNING: authentication is disabled", fg="yellow", err=True)
    run_server(app, server.host, server.port, server.graceful_shutdown_s)
    sys.stdout.flush()
