"""`inhouse serve`'s banner is honest about the tiny default model and shows the way out."""

from __future__ import annotations

from pathlib import Path

from inhouse.cli.serve import IMPORT_COMMAND, model_lines
from inhouse.engine.pool import ModelSpec
from inhouse.models.default import DefaultModelMissing, default_model_path
from tests.conftest import need
from tests.e2e.test_models_cli import ok
from tests.gguf_files import write_model


def test_the_default_model_is_called_a_demo_with_the_command_that_imports_a_real_one() -> None:
    try:
        path = default_model_path()
    except DefaultModelMissing as exc:
        need(False, str(exc))
        raise
    text = "\n".join(model_lines(ModelSpec("smollm2", path, pinned=True), 1))
    assert "smollm2" in text and "135M demo model for trying the API" in text
    assert IMPORT_COMMAND in text


def test_another_model_gets_no_demo_note(tmp_path: Path) -> None:
    text = "\n".join(model_lines(ModelSpec("mine", write_model(tmp_path / "mine.gguf")), 1))
    assert "mine.gguf" in text
    assert "demo" not in text and IMPORT_COMMAND not in text


def test_the_import_command_shown_works_as_written(tmp_path: Path) -> None:
    program, *args = IMPORT_COMMAND.split()
    assert program == "inhouse" and args[:2] == ["models", "import"]
    model = write_model(tmp_path / "model.gguf")
    args = [str(model) if arg == "./model.gguf" else arg for arg in args[1:]]
    assert "imported my-model:" in ok(tmp_path / "home", *args)
    assert ok(tmp_path / "home", "list").count("my-model") == 1
