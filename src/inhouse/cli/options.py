"""What admin commands share: the --config and --home options, settings, and refusals."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from inhouse.config import Settings, load_settings
from inhouse.errors import InhouseError

EXIT_REFUSED = 2

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML settings file (sections: server, engine, auth, models, embeddings, store, "
        "ledger, costs, network).",
    ),
]
HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help=f"{Settings.model_fields['home'].description} [env INHOUSE_HOME]"),
]


def settings_from(config: Path | None, home: Path | None) -> Settings:
    """Settings from the file and environment, with --home over both when given."""
    return load_settings(config, **({"home": home} if home else {}))


@contextmanager
def refusals() -> Iterator[None]:
    """Turn typed errors and unreadable files into `error: ...` on stderr and exit 2."""
    try:
        yield
    except BrokenPipeError:  # `... | head` closed the pipe: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except InhouseError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    except OSError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
