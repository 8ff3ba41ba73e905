"""Structured output and tool calling through the official openai client, on the 135M model."""

from __future__ import annotations

import json
from typing import Annotated, Any

import openai
import pytest
from pydantic import BaseModel, Field

from tests.conftest import Served

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 40},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 20}},
            "required": ["zone"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
def client(real_server: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=real_server.v1, api_key=real_server.key, max_retries=0)


def test_json_object_output_always_parses(client: openai.OpenAI) -> None:
    prompts = [
        "Give a JSON object with the keys name and color for a red apple.",
        "Return JSON: the name and age of a person.",
    ]
    finished: list[bool] = []
    for prompt in prompts:
        for temperature in (0.0, 0.7):
            reply = client.chat.completions.create(
                model="smollm2",
                messages=[{"role": "user", "content": prompt}],
                response_format={"type": "json_object"},
                max_tokens=150,
                temperature=temperature,
                seed=1,
            )
            finished.append(reply.choices[0].finish_reason == "stop")
            if finished[-1]:
                assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)
    # a 135M model may ramble inside the object until max_tokens (as OpenAI warns, the JSON
    # is then cut); whenever it ends by itself, the grammar guarantees a JSON object
    assert sum(finished) >= len(finished) // 2


class Person(BaseModel):
    # bounded fields: the grammar then guarantees the answer ends, even from a tiny model
    name: Annotated[str, Field(max_length=30)]
    age: Annotated[int, Field(ge=0, le=120)]
    hobbies: Annotated[list[Annotated[str, Field(max_length=20)]], Field(max_length=3)]


def test_json_schema_output_validates_with_the_sdk_parse_helper(client: openai.OpenAI) -> None:
    reply = client.chat.completions.parse(
        model="smollm2",
        messages=[{"role": "user", "content": "Invent a person."}],
        response_format=Person,
        max_tokens=300,
        temperature=0,
    )
    person = reply.choices[0].message.parsed
    assert isinstance(person, Person)


def test_required_tool_call_is_a_valid_call(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="smollm2",
        messages=ASK,  # type: ignore[arg-type]
        tools=[WEATHER, TIME],  # type: ignore[list-item]
        tool_choice="required",
        max_tokens=100,
        temperature=0,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in ("get_weather", "get_time")  # type: ignore[union-attr]
    arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
    if call.function.name == "get_weather":  # type: ignore[union-attr]
        assert arguments["unit"] in ("celsius", "fahrenheit") and isinstance(arguments["city"], str)


def test_named_tool_choice_forces_that_function_when_streaming(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smollm2",
        messages=ASK,  # type: ignore[arg-type]
        tools=[WEATHER, TIME],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=100,
        temperature=0,
        stream=True,
    )
    calls: list[Any] = []
    finish = None
    for chunk in stream:
        if chunk.choices:
            calls += chunk.choices[0].delta.tool_calls or []
            finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [c.function.name for c in calls] == ["get_time"]
    assert "zone" in json.loads(calls[0].function.arguments)


def test_tool_results_round_trip(client: openai.OpenAI) -> None:
    messages: list[Any] = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city": "Paris", "unit": "celsius"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21}'},
    ]
    reply = client.chat.completions.create(
        model="smollm2",
        messages=messages,
        tools=[WEATHER],
        max_tokens=40,
        temperature=0,  # type: ignore[list-item]
    )
    assert reply.choices[0].message.content or reply.choices[0].message.tool_calls


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "nope"}},
                }
            },
            "response_format",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"$ref": "#"}},
                }
            },
            "response_format",
        ),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "other"}},
            },
            "tool_choice",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_bad_schemas_and_tool_choices_are_400(
    client: openai.OpenAI, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2", messages=ASK, max_tokens=4, **fields)  # type: ignore[arg-type]
    assert info.value.param == param
