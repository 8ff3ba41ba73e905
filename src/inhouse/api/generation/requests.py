"""The generation requests every front-end translates into: OpenAI's chat and completion
requests, the richest of the wire formats served (Ollama's routes build them too).
Responses are built as plain dicts, for speed, by each front-end."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt

Temperature = Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0, allow_inf_nan=False)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]


def _finite(value: dict[str, Any]) -> dict[str, Any]:
    """`value` unchanged if every number in it is finite (Python's json reads NaN and
    Infinity, JSON has neither, and a grammar cannot bound a number by them)."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("a JSON schema's numbers must be finite, not NaN or Infinity")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


SchemaDict = Annotated[dict[str, Any], AfterValidator(_finite)]
"""A JSON schema as sent: an object whose numbers are all finite."""


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class FunctionCall(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


ToolName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class FunctionDef(BaseModel):
    name: ToolName
    description: str | None = None
    parameters: SchemaDict = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: StrictBool | None = None


class ToolDef(BaseModel):
    type: Literal["function"]
    function: FunctionDef


class ChosenFunction(BaseModel):
    name: ToolName


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: ChosenFunction


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str = "response"
    description: str | None = None
    json_schema: SchemaDict = Field(alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(BaseModel):
    include_usage: StrictBool = False


class SamplingFields(BaseModel):
    """Fields shared by chat and text completions."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    max_tokens: PositiveInt | None = None
    temperature: Temperature = 1.0
    top_p: Probability = 1.0
    n: PositiveInt = 1
    stop: str | list[str] | None = None
    seed: StrictInt | None = None
    presence_penalty: Penalty = 0.0
    frequency_penalty: Penalty = 0.0
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # extensions that vLLM and llama.cpp's server accept too
    top_k: Annotated[StrictInt, Field(ge=0)] = 0
    min_p: Probability = 0.0
    repetition_penalty: Annotated[float, Field(gt=0.0, le=10.0, allow_inf_nan=False)] = 1.0

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


CollectionName = Annotated[str, Field(min_length=1, max_length=128)]


class KnowledgeOptions(BaseModel):
    """Ground the answer in passages of these collections (an inhouse extension)."""

    model_config = ConfigDict(extra="forbid")

    collections: Annotated[list[CollectionName], Field(min_length=1, max_length=32)] | None = None
    top_k: Annotated[StrictInt, Field(ge=1, le=20)] = 5


MetadataKey = Annotated[str, Field(max_length=64)]
MetadataValue = Annotated[str, Field(max_length=512)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)]
"""OpenAI's `metadata`: up to 16 short string pairs, kept with a stored completion."""


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    store: StrictBool | None = None  # keep the prompt and answer (choice 0) for feedback
    metadata: Metadata | None = None
    knowledge: KnowledgeOptions | None = None
    max_completion_tokens: PositiveInt | None = None
    logprobs: StrictBool = False
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=20)] | None = None
    response_format: ResponseFormat | None = None
    tools: Annotated[list[ToolDef], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: StrictBool = True

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(SamplingFields):
    prompt: str | list[str] = Field(min_length=1)
    logprobs: Annotated[StrictInt, Field(ge=0, le=5)] | None = None
    echo: StrictBool = False
    suffix: str | None = None
    max_tokens: PositiveInt | None = 16

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)
