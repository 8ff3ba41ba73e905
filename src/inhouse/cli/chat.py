"""`inhouse chat`: a terminal chat over the OpenAI API of a running server."""

from __future__ import annotations

import sys

import openai
import typer
from openai.types.chat import ChatCompletionMessageParam


def run_chat(url: str, api_key: str, model: str, system: str | None, max_tokens: int) -> None:
    client = openai.OpenAI(base_url=url, api_key=api_key, max_retries=0)
    history: list[ChatCompletionMessageParam] = []
    if system:
        history.append({"role": "system", "content": system})
    typer.echo(f"chatting with {model} at {url}; /exit to quit, /reset to start over")
    while True:
        try:
            line = input("> ").strip()
        except (EOFError, KeyboardInterrupt):
            typer.echo()
            return
        if line in ("/exit", "/quit"):
            return
        if line == "/reset":
            del history[int(bool(system)) :]
            continue
        if not line:
            continue
        history.append({"role": "user", "content": line})
        try:
            answer = _ask(client, model, history, max_tokens)
        except openai.APIError as exc:
            history.pop()
            typer.secho(f"error: {exc}", fg="red", err=True)
            continue
        history.append({"role": "assistant", "content": answer})


def _ask(
    client: openai.OpenAI,
    model: str,
    history: list[ChatCompletionMessageParam],
    max_tokens: int,
) -> str:
    stream = client.chat.completions.create(
        model=model, messages=history, stream=True, max_tokens=max_tokens
    )
    parts: list[str] = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text = chunk.choices[0].delta.content
            parts.append(text)
            sys.stdout.write(text)
            sys.stdout.flush()
    sys.stdout.write("\n")
    return "".join(parts)
