"""Inspect a GGUF in a child process under time and memory limits.

A model file is untrusted input: the header parser and the chat template check run in a
separate interpreter with a capped address space, CPU time and no file writes, and the child
is killed when it takes too long. The caller only ever sees a GGUFInfo or InvalidModelFile.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from inhouse.errors import InvalidModelFile
from inhouse.models.gguf import GGUFInfo, read_gguf

INSPECT_TIMEOUT_S = 5.0
INSPECT_MEMORY_BYTES = 1 << 30
_CPU_SECONDS = 30  # a backstop should the parent die before it can kill the child


def inspect_file(path: Path, *, timeout_s: float = INSPECT_TIMEOUT_S) -> GGUFInfo:
    """Inspect `path` in a limited child process; raises InvalidModelFile if it is refused."""
    command = [sys.executable, "-m", "inhouse.models.inspect", str(path)]
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
        detail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise InvalidModelFile(
            f"the file could not be inspected (inspector exit status {done.returncode}: "
            f"{detail[0]})"
        ) from None
    if "error" in answer:
        raise InvalidModelFile(str(answer["error"]))
    return GGUFInfo.from_dict(answer["info"])


def _limit_resources() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (INSPECT_MEMORY_BYTES, INSPECT_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (_CPU_SECONDS, _CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def _check_template(source: str) -> None:
    from inhouse.engine.templates import ChatTemplate, UnsafeTemplate

    try:
        ChatTemplate(source)
    except UnsafeTemplate as exc:
        raise InvalidModelFile(f"the model's chat template is refused: {exc}") from exc


def _inspect_here(path: Path) -> dict[str, Any]:
    try:
        info = read_gguf(path)
        if info.chat_template is not None:
            _check_template(info.chat_template)
    except InvalidModelFile as exc:
        return {"error": exc.message}
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
    sys.stdout.write(json.dumps(_inspect_here(Path(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
