"""One Settings object: defaults < TOML file < environment (INHOUSE_*) < explicit overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class ServerSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on (0: any free).")
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    graceful_shutdown_s: float = Field(
        30.0, ge=0, description="On SIGTERM, how long in-flight requests may run to finish."
    )


class EngineSettings(BaseModel):
    model_path: Path | None = Field(
        None, description="GGUF file to serve; default: the embedded SmolLM2-135M-Instruct."
    )
    model_name: str = Field("smollm2", description="Name clients use for the model.")
    n_threads: int = Field(0, ge=0, le=512, description="CPU threads (0: all cores).")
    kv_cells: int = Field(
        16384, ge=256, le=1 << 20, description="Size of the shared KV pool, in tokens."
    )
    max_context: int = Field(
        0, ge=0, description="Longest prompt + completion per request (0: the model's own)."
    )
    n_batch: int = Field(512, ge=16, le=8192, description="Tokens decoded per engine step.")
    max_running: int = Field(
        16, ge=1, le=128, description="Sequences generating at once (continuous batching)."
    )
    prefix_cache_slots: int = Field(
        8, ge=0, le=128, description="Finished prompts kept in KV for prefix reuse."
    )
    max_queue: int = Field(
        256, ge=0, description="Requests waiting beyond max_running before 503 Overloaded."
    )
    max_n: int = Field(8, ge=1, le=128, description="Largest `n` (choices) per request.")
    max_stop: int = Field(16, ge=0, le=64, description="Most stop strings per request.")


class AuthSettings(BaseModel):
    enabled: bool = Field(True, description="Require a bearer API key on /v1.")


class Settings(BaseSettings):
    """Every setting of inhouse; env vars use INHOUSE_ and `__` between section and field."""

    model_config = SettingsConfigDict(
        env_prefix="INHOUSE_", env_nested_delimiter="__", extra="forbid"
    )

    home: Path = Field(
        Path("~/.inhouse").expanduser(),
        description="Data directory: database, model store, keys.",
    )
    server: ServerSettings = ServerSettings()
    engine: EngineSettings = EngineSettings()
    auth: AuthSettings = AuthSettings()


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from an optional TOML file, the environment, then `overrides`."""

    class FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file)
            return (init_settings, env_settings, toml)

    return FileSettings(**overrides)
