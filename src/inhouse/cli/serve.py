"""`inhouse serve`: load the model, make sure a key exists, print the banner, run."""

from __future__ import annotations

import logging
import sys

import typer

from inhouse.airgap import guard_from_settings
from inhouse.auth.bootstrap import ensure_admin
from inhouse.cli.server import is_loopback, run_server
from inhouse.config import Settings
from inhouse.store.private import private_dir


def _refuse(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


def start(settings: Settings, *, new_admin_key: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = settings.server
    if not settings.auth.enabled and not is_loopback(server.host):
        _refuse(f"--no-auth is only allowed on a loopback address, not {server.host}")
    private_dir(settings.home)
    air_gap = guard_from_settings(settings)  # before anything else can open a socket

    from inhouse.api.app import create_app, default_resolver
    from inhouse.models.default import DefaultModelMissing

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
    size_mb = spec.path.stat().st_size / 1e6 if spec.path.is_file() else 0
    lines = [
        "",
        "  inhouse is running",
        f"  API       {url}/v1   (OpenAI-compatible)",
        f"  model     {spec.name}  ({spec.path.name}, {size_mb:.0f} MB); "
        f"{len(resolver.names())} names in all (inhouse models list)",
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
