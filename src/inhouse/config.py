"""One Settings object: defaults < TOML file < environment (INHOUSE_*) < explicit overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

LLAMA_MAX_SEQUENCES = 256


class ServerSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on (0: any free).")
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    graceful_shutdown_s: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM, how long in-flight requests may run to finish; the process "
        "exits within about this long after the signal.",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Longest a client may take to send a request body (408 and the "
        "connection closed beyond).",
    )


class EngineSettings(BaseModel):
    model_path: Path | None = Field(
        None, description="GGUF file to serve; default: the embedded SmolLM2-135M-Instruct."
    )
    model_name: str = Field("smollm2", description="Name clients use for the model.")
    n_threads: int = Field(0, ge=0, le=512, description="CPU threads (0: all cores).")
    kv_cells: int = Field(
        32768,
        ge=256,
        le=1 << 20,
        description="Size of the KV memory, in tokens (streams layout: split evenly among "
        "max_running streams, which bounds each request's prompt + completion).",
    )
    kv_layout: Literal["streams", "unified"] = Field(
        "streams",
        description="KV memory layout: one stream per running sequence (each token attends "
        "over its own sequence only: fast long prompts at many users) or one unified pool "
        "(any request up to kv_cells, slower as the pool fills).",
    )
    max_context: int = Field(
        0, ge=0, description="Longest prompt + completion per request (0: the model's own)."
    )
    n_batch: int = Field(512, ge=16, le=8192, description="Tokens decoded per engine step.")
    max_running: int = Field(
        16, ge=1, le=128, description="Sequences generating at once (continuous batching)."
    )
    prefix_cache_slots: int = Field(
        32,
        ge=0,
        le=200,
        description="Unified layout: finished prompts kept in KV for prefix reuse (streams "
        "layout: idle streams keep theirs).",
    )
    prefix_cache_tokens: int = Field(
        0,
        ge=0,
        le=1 << 20,
        description="Unified layout: most tokens the prefix cache keeps, least recently used "
        "evicted first (0: as many as the pool has room for).",
    )
    max_queue: int = Field(
        256, ge=0, description="Requests waiting beyond max_running before 503 Overloaded."
    )
    max_n: int = Field(8, ge=1, le=128, description="Largest `n` (choices) per request.")
    memory_budget_mb: int = Field(
        8192, ge=64, description="Loaded models (weights + KV) beyond this unload, LRU first."
    )
    keep_alive_s: float = Field(
        300.0, ge=0.1, description="A model idle this long is unloaded (not the default one)."
    )
    max_stop: int = Field(16, ge=0, le=64, description="Most stop strings per request.")
    max_sample_ms: float = Field(
        500.0,
        ge=1.0,
        le=60_000.0,
        description="A sequence whose sampling of one token takes longer ends with an error "
        "(a grammar too costly to follow); the others go on.",
    )

    @model_validator(mode="after")
    def _fits_llama_sequences(self) -> EngineSettings:
        # every running sequence and every cached prefix is a llama.cpp sequence id
        if self.max_running + self.prefix_cache_slots > LLAMA_MAX_SEQUENCES:
            raise ValueError(
                f"max_running + prefix_cache_slots must be at most {LLAMA_MAX_SEQUENCES}"
            )
        return self


def bare_hosts(hosts: list[str]) -> list[str]:
    cleaned = [host.strip().lower().rstrip(".") for host in hosts]
    for host in cleaned:
        if not host or "/" in host or ":" in host:
            raise ValueError(f"{host!r} is not a host name (e.g. 'models.example.com')")
    return cleaned


HostList = Annotated[list[str], AfterValidator(bare_hosts)]


class ModelsSettings(BaseModel):
    allow_pull_hosts: HostList = Field(
        default_factory=list,
        description="Hosts `models pull` may download from (subdomains included); "
        "empty: air-gapped, nothing is downloaded.",
    )
    import_dir: Path | None = Field(
        None,
        description="A folder on the server whose GGUF files admins may import from the web "
        "app (POST /admin/models/import); unset: models are imported with the CLI only.",
    )


class AuthSettings(BaseModel):
    enabled: bool = Field(True, description="Require a bearer API key on /v1 and /api.")
    session_hours: float = Field(
        12.0, gt=0, le=24 * 90, description="How long a web sign-in lasts before it expires."
    )
    secure_cookies: bool = Field(
        True, description="Mark the session cookie Secure (sent over HTTPS and localhost only)."
    )
    login_failures_per_user: int = Field(
        10,
        ge=0,
        le=100_000,
        description="Failed web sign-ins for one user name within login_window_s before "
        "further tries get 429 with Retry-After (0: no limit).",
    )
    login_failures_per_address: int = Field(
        50,
        ge=0,
        le=100_000,
        description="Failed web sign-ins from one client address within login_window_s "
        "before further tries get 429 with Retry-After (0: no limit).",
    )
    login_window_s: float = Field(
        900.0, gt=0, le=86400, description="The sliding window of the sign-in limits, seconds."
    )


class StoreSettings(BaseModel):
    url: str = Field(
        "",
        description="Database URL: empty for SQLite in the data directory, or "
        "postgresql://user:password@host/db.",
    )


class LedgerSettings(BaseModel):
    audit_key_file: Path | None = Field(
        None,
        description="File holding the audit checkpoints' HMAC key (outside the database); "
        "default: audit.key in the data directory.",
    )
    checkpoint_every: int = Field(
        100, ge=1, le=1_000_000, description="Audit entries between signed checkpoints."
    )
    log_content: bool = Field(
        False, description="Keep prompt and response text (redacted) for retention_days."
    )
    redactors: list[str] = Field(
        default_factory=lambda: ["email", "phone", "card", "iban", "national_id"],
        description="Redactors run on logged content: email, phone, card, iban, national_id.",
    )
    redact_patterns: list[str] = Field(
        default_factory=list, description="Extra regular expressions redacted from content."
    )
    content_retention_days: float = Field(
        30.0, gt=0, description="Logged content older than this is deleted."
    )


class CostSettings(BaseModel):
    machine_usd_per_hour: float | None = Field(
        None,
        ge=0,
        description="What this machine costs per hour (cloud rate); overrides "
        "the hardware amortization below when set.",
    )
    hardware_usd: float = Field(3000.0, ge=0, description="Purchase price of this machine.")
    amortization_months: float = Field(
        36.0, gt=0, description="Months over which the hardware is written off."
    )
    watts: float = Field(150.0, ge=0, description="Average power draw of this machine.")
    usd_per_kwh: float = Field(0.15, ge=0, description="Electricity price.")
    price_file: Path | None = Field(
        None, description="Price table of commercial APIs (TOML); default: the bundled one."
    )


class NetworkSettings(BaseModel):
    allow_hosts: HostList = Field(
        default_factory=list,
        description="Hosts this process may connect to besides loopback (air-gap allow-list; "
        "subdomains included).",
    )


class EmbeddingsSettings(BaseModel):
    enabled: bool = Field(
        True, description="Serve /v1/embeddings with all-MiniLM-L6-v2 (loaded on first use)."
    )
    threads: int = Field(0, ge=0, le=512, description="CPU threads for embeddings (0: all cores).")
    batch_size: int = Field(
        32, ge=1, le=2048, description="Texts run through the model at once (sorted by length)."
    )
    max_request_tokens: int = Field(
        300_000, ge=256, description="Most tokens one embeddings request may hold (400 beyond)."
    )


class KnowledgeSettings(BaseModel):
    max_file_mb: float = Field(
        64, gt=0, le=4096, description="Largest file a collection takes in; larger ones fail."
    )
    max_unpacked_mb: float = Field(
        256,
        gt=0,
        le=16384,
        description="Most bytes a DOCX (a zip) may unpack to before parsing (zip-bomb guard).",
    )
    chunk_tokens: int = Field(
        200, ge=32, le=254, description="Most embedder tokens per chunk (the model reads 254)."
    )
    overlap_tokens: int = Field(
        32, ge=0, le=128, description="Tokens a chunk repeats from the end of the one before."
    )
    admins_read_all: bool = Field(
        False,
        description="Admins read every collection's content; off: only what their groups are "
        "granted, like everyone else.",
    )
    files_dir: Path | None = Field(
        None,
        description="Where files uploaded over the API are kept (owner-only, named by content "
        "hash); default: <home>/knowledge.",
    )
    connector_key_file: Path | None = Field(
        None,
        description="Key that seals SQL connectors' passwords (AES-GCM, hex, mode 600; created "
        "if missing); default: connectors.key in the data directory.",
    )
    scheduled_syncs: bool = Field(
        True, description="`inhouse serve` runs the connectors' syncs at their `--every` interval."
    )


class TuningSettings(BaseModel):
    """Data for tuning: what completions and the feedback on them keep."""

    keep_feedback_text: bool = Field(
        False,
        description="Keep the prompt and the answer of every chat completion (as if each "
        "request to /v1/chat/completions sent `store: true`) and with each rating given in the "
        "web chat, for feedback and tuning data sets; off: only completions sent with `store: "
        "true` are kept, and a web-chat rating stores only itself and any suggested answer.",
    )
    max_file_mb: float = Field(
        256,
        gt=0,
        le=16384,
        description="Largest training file `tune data add` and /v1/files take (over HTTP: "
        "streamed to disk, 413 beyond).",
    )
    run_jobs: bool = Field(
        True,
        description="`inhouse serve` trains queued fine-tuning jobs (and runs the "
        "continual-learning schedules); off: only `inhouse tune start` in the foreground does.",
    )
    schedules_every_s: float = Field(
        60.0,
        ge=1.0,
        le=86_400.0,
        description="How often `inhouse serve` looks at the continual-learning schedules.",
    )
    concurrent_jobs: int = Field(
        1, ge=1, le=8, description="Training jobs that run at once; the others wait, queued."
    )
    threads: int = Field(
        1,
        ge=1,
        le=256,
        description="CPU threads a training job uses (torch); the rest stay with serving.",
    )
    checkpoint_every: int = Field(
        50, ge=1, le=100_000, description="Steps between a training job's checkpoints."
    )
    max_memory_mb: int = Field(
        16_384,
        ge=512,
        le=4_194_304,
        description="Memory a training job's process may take; beyond it the job fails "
        "with an out-of-memory error and serving is untouched.",
    )
    stall_timeout_s: float = Field(
        1800.0,
        ge=1.0,
        le=86_400.0,
        description="A trainer that reports nothing for this long (a hang) is stopped and "
        "counts as one that died.",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        le=20,
        description="Times a job is started (resuming from its last checkpoint) after its "
        "trainer dies before the job is marked failed.",
    )


HEX_COLOUR = r"^#[0-9a-fA-F]{6}$"


class BrandingSettings(BaseModel):
    """White-label: what the web app and every widget show as the product."""

    product_name: str = Field(
        "inhouse", min_length=1, max_length=64, description="Name in titles, header and widget."
    )
    logo_file: Path | None = Field(
        None, description="PNG or SVG shown in the header and widget; default: a text mark."
    )
    primary_colour: str = Field(
        "#1f4fa8", pattern=HEX_COLOUR, description="Buttons, links and the widget bubble."
    )
    background_colour: str = Field("#ffffff", pattern=HEX_COLOUR, description="Page background.")
    text_colour: str = Field("#1a1a1a", pattern=HEX_COLOUR, description="Body text.")
    welcome_text: str = Field(
        "Ask anything. Answers stay on this server.",
        max_length=500,
        description="Shown above an empty chat (plain text).",
    )
    footer_text: str = Field(
        "", max_length=500, description="Shown at the foot of every page (plain text)."
    )


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
    models: ModelsSettings = ModelsSettings()
    auth: AuthSettings = AuthSettings()
    embeddings: EmbeddingsSettings = EmbeddingsSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    store: StoreSettings = StoreSettings()
    ledger: LedgerSettings = LedgerSettings()
    costs: CostSettings = CostSettings()
    network: NetworkSettings = NetworkSettings()
    branding: BrandingSettings = BrandingSettings()
    tuning: TuningSettings = TuningSettings()

    @model_validator(mode="after")
    def _knowledge_files_in_home(self) -> Settings:
        # the knowledge service sees only its own section: tell it where the data directory is
        if self.knowledge.files_dir is None:
            self.knowledge.files_dir = self.home / "knowledge"
        if self.knowledge.connector_key_file is None:
            self.knowledge.connector_key_file = self.home / "connectors.key"
        return self

    def database_url(self) -> str:
        """The store's URL: the configured one, or SQLite in the data directory."""
        return self.store.url or f"sqlite:///{self.home / 'inhouse.db'}"

    def audit_key_path(self) -> Path:
        return self.ledger.audit_key_file or self.home / "audit.key"


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
