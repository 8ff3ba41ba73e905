"""The trainer's contract without torch: the spec is checked strictly, the server can import
it without torch, bad data and refused files fail the child with an error event before a
model is loaded, and pickle files never get read."""

from __future__ import annotations

import itertools
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inhouse.errors import InvalidRequest
from inhouse.tuning.datasets import InvalidTrainingFile
from inhouse.tuning.lora_export import UnsupportedBaseModel
from inhouse.tuning.peft_files import UnsafeWeightsFile
from inhouse.tuning.trainer.checkpoints import read_init_adapter, write_adapter
from inhouse.tuning.trainer.data import epoch_batches, steps_per_epoch
from inhouse.tuning.trainer.loop import learning_rate, run
from inhouse.tuning.trainer.progress import Progress, read_events
from inhouse.tuning.trainer.spec import ALL_MODULES, TrainSpec, tuning_available
from tests.gguf_files import write_model

CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}


def spec(tmp_path: Path, **changes: object) -> TrainSpec:
    fields: dict[str, object] = {
        "base_gguf": str(tmp_path / "missing.gguf"),
        "train_file": str(tmp_path / "train.jsonl"),
        "eval_file": None,
        "format": "chat",
        "epochs": 1,
        "max_memory_mb": None,
    }
    return TrainSpec(**{**fields, **changes})  # type: ignore[arg-type]


def job(tmp_path: Path, lines: list[str], **changes: object) -> Path:
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "spec.json").write_text(spec(tmp_path, **changes).to_json())
    return folder


def test_spec_round_trips_with_defaults(tmp_path: Path) -> None:
    made = spec(tmp_path, alpha=16, init_adapter="/a/b")
    assert made.rank == 16 and made.target_modules == ALL_MODULES and made.batch_size == 8
    again = TrainSpec.from_json(made.to_json())
    assert again == made and isinstance(again.alpha, float)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"surprise": 1}, "unknown training spec fields: surprise"),
        ({"rank": "16"}, "'rank' has the wrong type"),
        ({"epochs": True}, "'epochs' has the wrong type"),
        ({"rank": 0}, "'rank' is 0"),
        ({"dropout": 1.5}, "'dropout' is 1.5"),
        ({"max_memory_mb": 1}, "'max_memory_mb' is 1"),
        ({"format": "csv"}, "format must be one of chat, text"),
        ({"target_modules": ["q_proj", "lm_head"]}, "target_modules must be distinct"),
        ({"target_modules": []}, "target_modules must be distinct"),
        ({"eval_file": 3}, "'eval_file' has the wrong type"),
    ],
)
def test_spec_refuses_bad_fields(tmp_path: Path, change: dict[str, object], message: str) -> None:
    text = json.loads(spec(tmp_path).to_json()) | change
    with pytest.raises(InvalidRequest, match=message):
        TrainSpec.from_json(json.dumps(text))


def test_spec_refuses_missing_fields_and_non_objects(tmp_path: Path) -> None:
    text = json.loads(spec(tmp_path).to_json())
    del text["epochs"], text["max_memory_mb"]
    with pytest.raises(InvalidRequest, match="missing training spec fields: epochs, max_memory_mb"):
        TrainSpec.from_json(json.dumps(text))
    for bad in ("[1]", "{nope"):
        with pytest.raises(InvalidRequest, match="spec"):
            TrainSpec.from_json(bad)


def test_spec_import_needs_no_torch() -> None:
    """The server imports the spec module and asks tuning_available without loading torch."""
    script = (
        "import sys; from inhouse.tuning.trainer.spec import tuning_available; "
        "print(tuning_available()); print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.split() == ["None", "False"], done.stderr


def test_tuning_available_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "peft" else real(name)
    )
    message = tuning_available()
    assert message is not None and "peft" in message
    assert "pip install 'inhouse[tuning]'" in message


def test_data_order_and_schedule_are_fixed_by_seed() -> None:
    """Every example once per epoch, batches of similar length, same order for same seed."""
    lengths = [5, 50, 6, 49, 7, 48, 8, 47, 9]
    batches = epoch_batches(lengths, 2, seed=1, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(9))
    assert len(batches) == steps_per_epoch(9, 2) == 5
    assert all(abs(lengths[b[0]] - lengths[b[-1]]) <= 2 for b in batches)
    assert batches == epoch_batches(lengths, 2, seed=1, epoch=0)
    assert batches != epoch_batches(lengths, 2, seed=1, epoch=1)
    rates = [learning_rate(s, 40, 1.0) for s in range(40)]
    assert rates[0] < rates[1] < rates[2] == 1.0 and rates[-1] == pytest.approx(1 / 38)
    assert all(a >= b for a, b in itertools.pairwise(rates[2:]))


def test_bad_data_fails_the_child_with_an_error_event(tmp_path: Path) -> None:
    """A malformed line: an error event naming the line, exit status 2, nothing written."""
    folder = job(tmp_path, [json.dumps(CHAT), "{oops", json.dumps({"messages": []})])
    done = subprocess.run(
        [sys.executable, "-m", "inhouse.tuning.trainer", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    [event] = read_events(folder)
    assert event["type"] == "error" and event["code"] == "invalid_training_file"
    assert "line 2: not valid JSON" in event["message"] and "line 3" in event["message"]
    assert sorted(p.name for p in folder.iterdir()) == ["progress.jsonl", "spec.json"]


def test_out_of_memory_is_an_error_event(tmp_path: Path) -> None:
    """A job that cannot fit under max_memory_mb fails with an out_of_memory event."""
    folder = job(tmp_path, [json.dumps(CHAT)], max_memory_mb=600)
    from inhouse.models.default import default_model_path

    spec_file = folder / "spec.json"
    spec_file.write_text(
        spec_file.read_text().replace(str(tmp_path / "missing.gguf"), str(default_model_path()))
    )
    done = subprocess.run(
        [sys.executable, "-m", "inhouse.tuning.trainer", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    [event] = read_events(folder)
    assert event["code"] == "out_of_memory" and "600 MB" in event["message"], event


class _Touch:
    """Unpickling this creates a file: proof that a refused pickle was never loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def test_pickle_adapter_or_checkpoint_is_refused_unread(tmp_path: Path) -> None:
    """A pickle as init_adapter (file or folder) or in a checkpoint: refused, never read."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Touch(str(marker)))
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "adapter_model.bin").write_bytes(payload)
    (previous / "adapter_config.json").write_text(json.dumps({"r": 16}))
    folder = job(tmp_path, [json.dumps(CHAT)], init_adapter=str(previous))
    with pytest.raises(UnsafeWeightsFile, match=r"adapter_model\.bin: pickle-based"):
        run(folder)
    spec_file = folder / "spec.json"
    as_file = json.loads(spec_file.read_text()) | {"init_adapter": str(previous / "x.pt")}
    spec_file.write_text(json.dumps(as_file))
    (previous / "x.pt").write_bytes(payload)
    with pytest.raises(UnsafeWeightsFile, match=r"x\.pt: pickle-based"):
        run(folder)
    step = folder / "checkpoints" / "step-5"
    step.mkdir(parents=True)
    (step / "adapter_model.safetensors").write_bytes(b"\x08" + b"\0" * 7 + b"{}")
    (step / "optimizer.pt").write_bytes(payload)
    with pytest.raises(UnsafeWeightsFile, match=r"optimizer\.pt: pickle-based"):
        run(folder)
    assert not marker.exists()


def test_no_data_or_an_unsupported_base_is_refused(tmp_path: Path) -> None:
    """Refused before torch is loaded: empty data, a missing base, a non-llama base."""
    folder = job(tmp_path, [""])
    with pytest.raises(InvalidTrainingFile, match="holds no example"):
        run(folder)
    (tmp_path / "train.jsonl").write_text(json.dumps(CHAT) + "\n")
    with pytest.raises(InvalidRequest, match=r"missing\.gguf does not exist"):
        run(folder)
    write_model(tmp_path / "missing.gguf", arch="qwen2")
    with pytest.raises(UnsupportedBaseModel, match="'qwen2' model; tuning supports llama"):
        run(folder)


def test_init_adapter_must_match_the_job(tmp_path: Path) -> None:
    """A safetensors adapter to continue from is read; one of another rank is refused."""
    previous = tmp_path / "v1"
    previous.mkdir()
    name = "base_model.model.model.layers.0.self_attn.q_proj.lora_{}.weight"
    tensors = {
        name.format("A"): np.ones((4, 8), np.float32),
        name.format("B"): np.zeros((8, 4), np.float32),
    }
    write_adapter(previous, tensors, {"r": 4, "lora_alpha": 8, "target_modules": {"q_proj"}})
    assert json.loads((previous / "adapter_config.json").read_text())["target_modules"] == [
        "q_proj"
    ]
    same = spec(tmp_path, rank=4, target_modules=("q_proj",))
    read = read_init_adapter(previous, same)
    np.testing.assert_array_equal(read[name.format("A")], tensors[name.format("A")])
    with pytest.raises(InvalidRequest, match="has rank 4 on"):
        read_init_adapter(previous, spec(tmp_path, target_modules=("q_proj",)))


def test_a_torn_progress_line_is_cut_off_before_appending(tmp_path: Path) -> None:
    """A child killed mid-write leaves half a line; the next run removes it, so readers that
    stop at the last newline never see it and every line stays JSON."""
    path = tmp_path / "progress.jsonl"
    path.write_text('{"type": "start"}\n{"type": "progr')
    assert read_events(tmp_path) == [{"type": "start"}]
    Progress(tmp_path).emit("error", code="x", message="y")
    lines = path.read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["start", "error"]
