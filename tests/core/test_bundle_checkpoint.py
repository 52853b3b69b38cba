"""scripts/bundle_checkpoint.py: a continued checkpoint keeps the sampling choices and the stage
history of the bundled checkpoint it continued."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from crystalflow.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bundle_checkpoint.py"


def _script():
    spec = importlib.util.spec_from_file_location("bundle_checkpoint", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stage(step: int) -> dict:
    return {"train_step": step, "train_seconds": 10.0 * step, "train_config": {"lr": 1e-4 * step}}


def test_history_appends_the_continued_stage_and_keeps_the_choices():
    bundle = _script()
    first = {**_stage(1), "note": "first", "geometry_choice": {"note": "two-stage"}}
    second = {**_stage(2), "note": "second", "geometry_choice": first["geometry_choice"],
              **bundle.carried_history(first)}
    carried = bundle.carried_history(second)
    assert carried["geometry_choice"] == {"note": "two-stage"}
    assert [s["train_step"] for s in carried["previous_stages"]] == [1, 2]
    assert carried["previous_stages"][-1]["note"] == "second"
    assert not set(carried) & set(bundle.STAGE_KEYS), "a stage key of the old stage leaked to the top"


def test_the_script_writes_the_new_stage_over_the_carried_history(tmp_path, monkeypatch):
    bundle = _script()
    weights = {"w": torch.ones(2, dtype=torch.float64)}
    old = Checkpoint(task="dng", model_name="m", model_config={}, task_config={"steps": 10}, stats={},
                     weights=weights, version="0",
                     extra={**_stage(5), "note": "old", "geometry_choice": {"previous": None}})
    trained = Checkpoint(task="dng", model_name="m", model_config={}, task_config={"steps": 10}, stats={},
                         weights=weights, version="0",
                         train_state={"step": 7, "elapsed": 70.0, "config": {"lr": 3e-4}},
                         extra={"note": "old"})
    save_checkpoint(old, tmp_path / "old.pt")
    save_checkpoint(trained, tmp_path / "last.pt")
    monkeypatch.setattr("sys.argv", ["bundle", str(tmp_path / "last.pt"), str(tmp_path / "new.pt"),
                                     "--steps", "50", "--continues", str(tmp_path / "old.pt"),
                                     "--note", "new"])
    bundle.main()
    new = load_checkpoint(tmp_path / "new.pt")
    assert new.train_state is None and new.task_config["steps"] == 50
    assert new.weights["w"].dtype == torch.float32
    assert (new.extra["train_step"], new.extra["note"]) == (7, "new")
    assert new.extra["geometry_choice"] == {"previous": None}
    assert new.extra["previous_stages"] == [{**_stage(5), "note": "old"}]
