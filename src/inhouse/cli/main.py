"""`inhouse`: serve, chat, models, users, groups, keys, usage, audit, doctor."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import typer

from inhouse.cli.audit import audit_app
from inhouse.cli.directory import groups_app, keys_app, users_app
from inhouse.cli.knowledge import knowledge_app
from inhouse.cli.options import ConfigOpt, HomeOpt
from inhouse.cli.tuning import tune_app
from inhouse.cli.tuning_jobs import register as register_tuning_jobs
from inhouse.cli.tuning_versions import register as register_tuning_versions
from inhouse.cli.usage import usage_app
from inhouse.config import AuthSettings, EngineSettings, ServerSettings, Settings, load_settings

app = typer.Typer(help="inhouse: your private AI, in house.", no_args_is_help=True)
models_app = typer.Typer(help="The models this server can run.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(users_app, name="users")
app.add_typer(groups_app, name="groups")
app.add_typer(keys_app, name="keys")
app.add_typer(usage_app, name="usage")
app.add_typer(audit_app, name="audit")
app.add_typer(knowledge_app, name="knowledge")
app.add_typer(tune_app, name="tune")
register_tuning_jobs(tune_app)
register_tuning_versions(tune_app)


class KVLayout(enum.Enum):
    """The choices of `--kv-layout` (typer lists an enum's values)."""

    streams = "streams"
    unified = "unified"


def _help(section: type[ServerSettings | EngineSettings | AuthSettings], name: str) -> str:
    """A flag's help is its setting's description plus the environment variable that sets it."""
    description = section.model_fields[name].description
    env = section.__name__.removesuffix("Settings").upper()
    return f"{description} [env INHOUSE_{env}__{name.upper()}]"


def _given(**values: Any) -> dict[str, Any]:
    """Only the flags the user gave: everything else comes from env, file, defaults."""
    return {k: v for k, v in values.items() if v is not None}


@app.command()
def serve(
    config: ConfigOpt = None,
    home: HomeOpt = None,
    host: Annotated[str | None, typer.Option(help=_help(ServerSettings, "host"))] = None,
    port: Annotated[int | None, typer.Option(help=_help(ServerSettings, "port"))] = None,
    model: Annotated[
        Path | None, typer.Option("--model", help=_help(EngineSettings, "model_path"))
    ] = None,
    model_name: Annotated[
        str | None, typer.Option(help=_help(EngineSettings, "model_name"))
    ] = None,
    threads: Annotated[int | None, typer.Option(help=_help(EngineSettings, "n_threads"))] = None,
    kv_cells: Annotated[int | None, typer.Option(help=_help(EngineSettings, "kv_cells"))] = None,
    kv_layout: Annotated[
        KVLayout | None, typer.Option(help=_help(EngineSettings, "kv_layout"))
    ] = None,
    max_running: Annotated[
        int | None, typer.Option(help=_help(EngineSettings, "max_running"))
    ] = None,
    max_queue: Annotated[int | None, typer.Option(help=_help(EngineSettings, "max_queue"))] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Accept requests without a key (loopback only).")
    ] = False,
    new_admin_key: Annotated[
        bool, typer.Option("--new-admin-key", help="Replace the admin key and print the new one.")
    ] = False,
) -> None:
    """Start the API server with the engine (default: the embedded SmolLM2-135M-Instruct)."""
    from inhouse.cli.serve import start

    overrides: dict[str, Any] = _given(home=home)
    server = _given(host=host, port=port)
    engine = _given(
        model_path=model,
        model_name=model_name,
        n_threads=threads,
        kv_cells=kv_cells,
        kv_layout=None if kv_layout is None else kv_layout.value,
        max_running=max_running,
        max_queue=max_queue,
    )
    for name, section in (("server", server), ("engine", engine)):
        if section:
            overrides[name] = section
    if no_auth:
        overrides["auth"] = {"enabled": False}
    start(load_settings(config, **overrides), new_admin_key=new_admin_key)


@app.command()
def doctor(
    config: ConfigOpt = None,
    home: HomeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Check the air-gap (by trying), storage, audit trail, models and keys; exit 1 on a failure."""
    from inhouse.cli.doctor import doctor_command

    doctor_command(config, home, as_json)


@app.command()
def chat(
    url: Annotated[str, typer.Option(help="Base URL of the server's OpenAI API.")] = (
        "http://127.0.0.1:8000/v1"
    ),
    api_key: Annotated[
        str, typer.Option(envvar="INHOUSE_API_KEY", help="API key [env INHOUSE_API_KEY].")
    ] = "none",
    model: Annotated[str, typer.Option(help="Model to talk to.")] = "smollm2",
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens.")] = 512,
) -> None:
    """Chat with a running server in the terminal (/exit to quit, /reset to start over)."""
    from inhouse.cli.chat import run_chat

    run_chat(url, api_key, model, system, max_tokens)


def _models_settings(config: Path | None, home: Path | None) -> Settings:
    return load_settings(config, **_given(home=home))


NameOpt = Annotated[
    str | None, typer.Option("--name", help="Name clients will use (default: from the file name).")
]


@models_app.command("list")
def models_list(config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """List the models and adapter sets this installation serves, with their aliases."""
    from inhouse.cli.models import list_models

    list_models(_models_settings(config, home))


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="Model, adapter set or alias.")],
    template: Annotated[bool, typer.Option("--template", help="Print the chat template.")] = False,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Show what a model is: architecture, parameters, quantization, context, file, sha256."""
    from inhouse.cli.models import show_model

    show_model(_models_settings(config, home), name, template)


@models_app.command("import")
def models_import(
    path: Annotated[Path, typer.Argument(help="A GGUF model file.")],
    name: NameOpt = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Copy a GGUF model into the store, after checking it is a safe, well-formed GGUF."""
    from inhouse.cli.models import import_model

    import_model(_models_settings(config, home), path, name)


@models_app.command("alias")
def models_alias(
    alias: Annotated[str, typer.Argument(help="The name apps call.")],
    target: Annotated[str, typer.Argument(help="Model, adapter set or alias it points to.")],
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Point an alias at a model (run again to retarget it)."""
    from inhouse.cli.models import alias_model

    alias_model(_models_settings(config, home), alias, target)


@models_app.command("unalias")
def models_unalias(
    alias: Annotated[str, typer.Argument(help="The alias to remove.")],
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Remove an alias (the model it points to stays)."""
    from inhouse.cli.models import unalias_model

    unalias_model(_models_settings(config, home), alias)


@models_app.command("rm")
def models_rm(
    name: Annotated[str, typer.Argument(help="Model or adapter set to remove.")],
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Remove a model or adapter set, and the aliases that pointed to it."""
    from inhouse.cli.models import remove_model

    remove_model(_models_settings(config, home), name)


@models_app.command("adapter")
def models_adapter(
    name: Annotated[str, typer.Argument(help="Name of the new adapter set.")],
    base: Annotated[str, typer.Option("--base", help="The base model (or an alias of it).")],
    lora: Annotated[
        list[Path], typer.Option("--lora", help="A GGUF LoRA adapter; repeat for several.")
    ],
    scale: Annotated[
        list[float] | None,
        typer.Option("--scale", help="Scale of each --lora, in the same order (default 1.0)."),
    ] = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Add a servable name made of a base model plus GGUF LoRA adapters with scales."""
    from inhouse.cli.models import add_adapter_set

    add_adapter_set(_models_settings(config, home), name, base, lora, scale or [])


@models_app.command("pull")
def models_pull(
    url: Annotated[str, typer.Argument(help="https:// URL of a GGUF file.")],
    name: NameOpt = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Download a GGUF and import it; refused unless models.allow_pull_hosts names the host."""
    from inhouse.cli.models import pull_model

    pull_model(_models_settings(config, home), url, name)
