"""Wire schemas of Ollama's API requests (responses are built as plain dicts)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from inhouse.api.generation.requests import KnowledgeOptions, SchemaDict

# the bounds of the OpenAI schemas, so that a valid option is a valid sampling field
Temperature = Annotated[float, Field(strict=True, ge=0.0, le=2.0, allow_inf_nan=False)]
Probability = Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)]
Penalty = Annotated[float, Field(strict=True, ge=-2.0, le=2.0, allow_inf_nan=False)]
RepeatPenalty = Annotated[float, Field(strict=True, gt=0.0, le=10.0, allow_inf_nan=False)]


class Options(BaseModel):
    """Ollama's `options`; unknown keys are ignored, as Ollama does."""

    model_config = ConfigDict(extra="ignore")

    temperature: Temperature | None = None
    top_p: Probability | None = None
    top_k: Annotated[StrictInt, Field(ge=0)] | None = None
    min_p: Probability | None = None
    seed: StrictInt | None = None
    num_predict: StrictInt | None = None
    stop: list[str] | None = None
    repeat_penalty: RepeatPenalty | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    num_ctx: Annotated[StrictInt, Field(ge=1)] | None = None  # validated, then ignored

    @field_validator("num_predict")
    @classmethod
    def _num_predict(cls, value: int | None) -> int | None:
        if value is not None and value < -2:
            raise ValueError("must be -1 (until the context ends), -2 (fill the context) or >= 0")
        return value


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    images: list[str] | None = None


class OllamaRequest(BaseModel):
    """Fields that /api/chat and /api/generate share; `model` is checked by the route."""

    model_config = ConfigDict(extra="ignore")

    model: str = ""
    stream: StrictBool | None = None  # None: stream, as Ollama does by default
    format: str | SchemaDict | None = None
    options: Options | None = None
    keep_alive: Any = None  # seconds or a duration like "5m"; checked by keep_alive_seconds
    think: StrictBool | str | None = None
    logprobs: StrictBool | None = None

    @property
    def streams(self) -> bool:
        return self.stream is not False


class ChatRequest(OllamaRequest):
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    knowledge: KnowledgeOptions | None = None  # an inhouse extension, as on /v1


class GenerateRequest(OllamaRequest):
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: StrictBool = False
    images: list[str] | None = None


class ShowRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = ""
    name: str = ""  # the older field name
    verbose: StrictBool = False

    @property
    def target(self) -> str:
        return self.model or self.name


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = ""
    input: Any = None  # a string or a list of strings; checked like /v1/embeddings' input
    dimensions: StrictInt | None = None
    options: Options | None = None
    keep_alive: Any = None


class EmbeddingsRequest(BaseModel):
    """The older /api/embeddings: one `prompt`, one `embedding` back."""

    model_config = ConfigDict(extra="ignore")

    model: str = ""
    prompt: str = ""
    options: Options | None = None
    keep_alive: Any = None
