"""`inhouse models ...` as an admin runs it: real processes on a temporary home."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gguf_files import hostile_files, write_lora, write_model

INHOUSE = [sys.executable, "-m", "inhouse"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def models(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INHOUSE_")}
    return subprocess.run(
        [*INHOUSE, "models", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def ok(home: Path, *args: str) -> str:
    result = models(home, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(home: Path, *args: str) -> str:
    result = models(home, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ")
    return result.stderr


def rows(listing: str) -> dict[str, list[str]]:
    lines = listing.splitlines()
    assert lines[0].split() == ["NAME", "ALIASES", "SIZE", "QUANT", "CTX", "PARAMS", "SHA256"]
    return {line.split()[0]: line.split() for line in lines[1:]}


def test_import_alias_retarget_list_and_remove(home: Path, tmp_path: Path) -> None:
    tiny = write_model(tmp_path / "Tiny-Model.gguf", context_length=4096)
    assert "imported tiny-model: llama" in ok(home, "import", str(tiny))
    ok(home, "import", str(write_model(tmp_path / "b.gguf", seed=1)), "--name", "other:v2")
    ok(home, "alias", "assistant", "tiny-model")
    listing = rows(ok(home, "list"))
    size_kb = f"{tiny.stat().st_size / 1e3:.1f}"
    assert listing["tiny-model"][1:6] == ["assistant", size_kb, "kB", "F32", "4096"]
    assert "smollm2" in listing  # the embedded default is always there
    ok(home, "alias", "assistant", "other:v2")
    assert rows(ok(home, "list"))["other:v2"][1] == "assistant"
    assert "other:v2 (via alias assistant)" in ok(home, "show", "assistant")
    assert "removed the aliases that pointed to it: assistant" in ok(home, "rm", "other:v2")
    assert set(rows(ok(home, "list"))) == {"smollm2", "tiny-model"}


def test_refusals_exit_2_with_a_reason_and_change_nothing(home: Path, tmp_path: Path) -> None:
    ok(home, "import", str(write_model(tmp_path / "tiny.gguf")), "--name", "tiny")
    manifest = (home / "models" / "manifest.json").read_bytes()
    assert "lowercase letters" in refused(home, "alias", "../etc", "tiny")
    assert "lowercase letters" in refused(
        home, "import", str(tmp_path / "tiny.gguf"), "--name", "a/b"
    )
    ok(home, "alias", "a", "tiny")
    ok(home, "alias", "b", "a")
    assert "alias loop refused: a -> b -> a" in refused(home, "alias", "a", "b")
    assert "not found; available: smollm2, tiny" in refused(home, "show", "nope")
    assert "built-in default" in refused(home, "rm", "smollm2")
    unsafe, _ = hostile_files(tmp_path / "hostile")["unsafe template"]
    assert "chat template" in refused(home, "import", str(unsafe), "--name", "evil")
    huge, _ = hostile_files(tmp_path / "hostile")["2^63 tensors"]
    started = time.monotonic()
    assert "9223372036854775808 tensors" in refused(home, "import", str(huge), "--name", "evil")
    assert time.monotonic() - started < 5
    ok(home, "unalias", "b")
    ok(home, "unalias", "a")
    assert (home / "models" / "manifest.json").read_bytes() == manifest
    assert [p.name for p in (home / "models" / "blobs").iterdir()] == [
        p.name for p in (home / "models" / "blobs").glob("sha256-*.gguf")
    ]


def test_import_refuses_runaway_templates_and_files_llama_cpp_cannot_load(
    home: Path, tmp_path: Path
) -> None:
    hostile = hostile_files(tmp_path / "hostile")
    looping, _ = hostile["looping template"]
    assert "loop iterations" in refused(home, "import", str(looping), "--name", "loops")
    bomb, _ = hostile["template building 90 MB"]
    assert "90000000 characters" in refused(home, "import", str(bomb), "--name", "bomb")
    no_heads = write_model(tmp_path / "no-heads.gguf", head_count=0)
    assert "llama.cpp cannot load" in refused(home, "import", str(no_heads), "--name", "heads")
    assert set(rows(ok(home, "list"))) == {"smollm2"}


def test_an_adapter_set_from_the_command_line(home: Path, tmp_path: Path) -> None:
    ok(home, "import", str(write_model(tmp_path / "tiny.gguf")), "--name", "base")
    lora = write_lora(tmp_path / "adapter.gguf")
    args = ["adapter", "tuned", "--base", "base", "--lora", str(lora), "--scale", "0.5"]
    assert "added tuned: base + adapter.gguf*0.5" in ok(home, *args)
    shown = ok(home, "show", "tuned")
    assert "adapter-set" in shown and "scale 0.5" in shown
    assert "F32 +1 LoRA" in ok(home, "list")
    assert "base of adapter set(s) tuned" in refused(home, "rm", "base")


def test_pull_is_refused_while_air_gapped_and_says_how_to_allow_it(home: Path) -> None:
    message = refused(home, "pull", "https://huggingface.co/org/repo/resolve/main/model.gguf")
    assert "air-gapped" in message
    assert "INHOUSE_MODELS__ALLOW_PULL_HOSTS" in message and "huggingface.co" in message


def test_model_store_changes_are_in_the_audit_trail(home: Path, tmp_path: Path) -> None:
    from sqlalchemy import select

    from inhouse.audit.check import verify
    from inhouse.audit.trail import load_audit_key
    from inhouse.store.db import open_database
    from inhouse.store.tables import AuditEntry

    ok(home, "import", str(write_model(tmp_path / "m.gguf")), "--name", "m")
    ok(home, "alias", "assistant", "m")
    ok(home, "unalias", "assistant")
    ok(home, "rm", "m")
    db = open_database(f"sqlite:///{home / 'inhouse.db'}")
    try:
        with db.read() as session:
            entries = list(
                session.scalars(select(AuditEntry).where(AuditEntry.action.like("model.%")))
            )
        assert [(e.action, e.target) for e in entries] == [
            ("model.import", "m"),
            ("model.alias", "assistant"),
            ("model.unalias", "assistant"),
            ("model.remove", "m"),
        ]
        assert entries[0].actor.startswith("cli:") and len(entries[0].detail["sha256"]) == 64
        assert verify(db, load_audit_key(home / "audit.key")).ok
    finally:
        db.close()
