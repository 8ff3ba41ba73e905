from pathlib import Path

import pytest
from pydantic import ValidationError

from inhouse.config import load_settings


def test_flags_beat_env_which_beats_the_toml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "inhouse.toml"
    config.write_text("[server]\nport = 9001\nhost = '0.0.0.0'\n[engine]\nkv_cells = 2048\n")
    monkeypatch.setenv("INHOUSE_SERVER__PORT", "9002")
    settings = load_settings(config)
    assert (settings.server.port, settings.server.host) == (9002, "0.0.0.0")
    assert settings.engine.kv_cells == 2048
    assert load_settings(config, server={"port": 9003}).server.port == 9003


def test_out_of_bounds_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHOUSE_ENGINE__MAX_RUNNING", "0")
    with pytest.raises(ValidationError):
        load_settings()


def test_more_sequences_than_llama_cpp_has_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHOUSE_ENGINE__MAX_RUNNING", "128")
    monkeypatch.setenv("INHOUSE_ENGINE__PREFIX_CACHE_SLOTS", "200")
    with pytest.raises(ValidationError, match="at most 256"):
        load_settings()
