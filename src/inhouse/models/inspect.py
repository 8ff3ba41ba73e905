"""Inspect a GGUF in a child process under time and memory limits.

A model file is untrusted input: the header parser and the chat template check run in a
separate interpreter with a capped address space, CPU time and no file writes, and the child
is killed when it takes too long. The chat template is compiled, checked, and rendered on a few
plain conversations under the render limits (a template that loops for ever or builds
gigabytes is refused here, not on its first request). On import (`load=True`), the child then
loads the model with llama.cpp, weights memory-mapped, so a file that llama.cpp cannot load is
refused with its reason. The caller only ever sees a GGUFInfo or InvalidModelFile.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from inhouse.engine.template_limits import RenderLimits, TemplateLimitExceeded
from inhouse.engine.templates import ChatTemplate, UnsafeTemplate
from inhouse.errors import InvalidModelFile, InvalidRequest
from inhouse.models.gguf import GGUFInfo, read_gguf

INSPECT_TIMEOUT_S = 5.0
LOAD_TIMEOUT_S = 60.0  # parsing, then loading a large model's metadata and vocabulary
INSPECT_MEMORY_BYTES = 1 << 30
LOAD_MEMORY_BYTES = 2 << 30  # on top of the mapped file: llama.cpp's vocabulary and graph
_CPU_SECONDS = 90  # a backstop should the parent die before it can kill the child
_LOADING = "loading the model with llama.cpp"
_LOAD = "--load"
PROBE_LIMITS = RenderLimits(seconds=1.0)
_PROBE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
_PROBES: tuple[tuple[list[dict[str, Any]], list[dict[str, Any]] | None], ...] = (
    ([{"role": "user", "content": "Hello!"}], None),
    (
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello!"},
            {"role": "assistant", "content": "Hi! How can I help?"},
            {"role": "user", "content": "What is 2 + 2?"},
        ],
        None,
    ),
    ([{"role": "user", "content": "What is the weather in Paris?"}], _PROBE_TOOLS),
)


def inspect_file(path: Path, *, timeout_s: float | None = None, load: bool = False) -> GGUFInfo:
    """Inspect `path` in a limited child process (with `load`, also load it with llama.cpp);
    raises InvalidModelFile if it is refused."""
    command = [sys.executable, "-m", "inhouse.models.inspect", str(path), *([_LOAD] * load)]
    if timeout_s is None:
        timeout_s = LOAD_TIMEOUT_S if load else INSPECT_TIMEOUT_S
    try:
        done = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise InvalidModelFile(
            f"inspecting the file took longer than {timeout_s:g} s; refused"
        ) from exc
    try:
        answer: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        stderr = done.stderr.decode(errors="replace")
        if _LOADING in stderr:
            raise InvalidModelFile(
                f"llama.cpp cannot load this model file (it failed with exit status "
                f"{done.returncode} while loading it)",
                code="model_not_loadable",
            ) from None
        detail = stderr.strip().splitlines()[-1:] or ["no output"]
        raise InvalidModelFile(
            f"the file could not be inspected (inspector exit status {done.returncode}: "
            f"{detail[0]})"
        ) from None
    if "error" in answer:
        raise InvalidModelFile(str(answer["error"]), code=answer.get("code"))
    return GGUFInfo.from_dict(answer["info"])


def _limit_resources() -> None:
    # the hard limit stays: the child raises its own soft limit to map a file it has checked
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (INSPECT_MEMORY_BYTES, hard))
    resource.setrlimit(resource.RLIMIT_CPU, (_CPU_SECONDS, _CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def _check_template(source: str) -> None:
    """Refuse a template that is unsafe, or that exceeds the render limits on a plain
    conversation (a template that refuses a conversation's shape is fine)."""
    try:
        template = ChatTemplate(source, limits=PROBE_LIMITS)
        for messages, tools in _PROBES:
            _probe(template, messages, tools)
    except UnsafeTemplate as exc:
        raise InvalidModelFile(f"the model's chat template is refused: {exc}") from exc
    except TemplateLimitExceeded as exc:
        raise InvalidModelFile(
            f"the model's chat template is refused: on a short test conversation, {exc.message}",
            code=exc.code,
        ) from exc


def _probe(
    template: ChatTemplate, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> None:
    """Render one probe conversation; only exceeding the limits (or unsafety) is fatal."""
    try:
        template.render(messages, tools=tools)
    except TemplateLimitExceeded:
        raise
    except InvalidRequest:  # the template refuses this shape of conversation: its right
        pass


def _check_loads(path: Path) -> None:
    """Refuse a model that llama.cpp cannot load (memory-mapped: the file is not read)."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = INSPECT_MEMORY_BYTES + LOAD_MEMORY_BYTES + path.stat().st_size
    soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    sys.stderr.write(_LOADING + "\n")  # the parent's clue if llama.cpp crashes the child
    sys.stderr.flush()
    from inhouse.models.loadcheck import load_error

    reason = load_error(path)
    if reason is not None:
        raise InvalidModelFile(
            f"llama.cpp cannot load this model file: {reason}", code="model_not_loadable"
        )


def _inspect_here(path: Path, load: bool) -> dict[str, Any]:
    try:
        info = read_gguf(path)
        if info.chat_template is not None:
            _check_template(info.chat_template)
        if load and info.kind == "model":
            _check_loads(path)
    except InvalidModelFile as exc:
        return {"error": exc.message, "code": exc.code}
    except MemoryError:
        return {"error": f"inspecting the file needs more than {INSPECT_MEMORY_BYTES >> 20} MiB"}
    except RecursionError:
        return {"error": "the file nests too deeply to inspect"}
    except OSError as exc:
        return {"error": f"cannot read the file: {exc.strerror}"}
    return {"info": info.to_dict()}


def main(argv: list[str]) -> int:
    """Child entry point: print one JSON object, {"info": ...} or {"error": message}."""
    _limit_resources()
    sys.stdout.write(json.dumps(_inspect_here(Path(argv[0]), _LOAD in argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
