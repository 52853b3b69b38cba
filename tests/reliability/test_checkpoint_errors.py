"""Checkpoints that cannot be used: one line, no traceback, no advice to load unsafely."""

from __future__ import annotations

import pickle

import pytest
import torch

from crystalflow.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from crystalflow.cli import main
from crystalflow.errors import CheckpointError
from crystalflow.pretrained import csp_flow_from_checkpoint, make_csp_checkpoint
from tests.dng.conftest import tiny_checkpoint  # noqa: F401 (fixture)


class Payload:  # a pickled object a weights-only load refuses
    pass


def _tiny_csp_checkpoint() -> Checkpoint:
    from crystalflow.crystal_tasks.csp import CSPConfig, CSPFlow
    from crystalflow.manifolds import LatticeChart
    from crystalflow.models import build_model

    model = build_model("cspnet", {"hidden": 8, "layers": 1})
    chart = LatticeChart.fit(torch.tensor([[4.0, 4.0, 4.0, 90.0, 90.0, 90.0],
                                           [5.0, 5.0, 6.0, 90.0, 90.0, 120.0]], dtype=torch.float64))
    flow = CSPFlow(model, chart, CSPConfig())
    return make_csp_checkpoint(flow, "cspnet", {"lattice_chart": chart.state_dict(), "max_atoms": 20},
                               model.state_dict(), None)


def test_unsafe_pickle_error_is_one_line_without_weights_only_advice(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "x", "obj": Payload()}, path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    text = str(exc.value)
    assert "\n" not in text and "weights_only" not in text and "evil.pt" in text


def test_garbage_file_is_one_line(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(pickle.dumps([1, 2, 3])[:5])
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("field,value", [
    ("model_config", {"hidden": 8, "layers": 1, "no_such_option": 3}),
    ("task_config", {"no_such_option": 1}),
    ("model_name", "no_such_network"),
    ("stats", {"max_atoms": 20}),
])
def test_bad_config_is_a_checkpoint_error(tmp_path, field, value):
    import dataclasses

    ck = dataclasses.replace(_tiny_csp_checkpoint(), **{field: value})
    with pytest.raises(CheckpointError) as exc:
        csp_flow_from_checkpoint(ck)
    assert "\n" not in str(exc.value)


def test_bad_config_through_the_cli_is_one_line(tiny_checkpoint, tmp_path, capsys):
    import dataclasses

    path = tmp_path / "bad.pt"
    save_checkpoint(dataclasses.replace(load_checkpoint(tiny_checkpoint), task_config={"bogus": 1}), path)
    assert [p.name for p in tmp_path.iterdir()] == ["bad.pt"]  # the save left no temporary file
    rc = main(["generate", "--num", "2", "--checkpoint", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and err.count("\n") == 1 and "bogus" in err
    assert not (tmp_path / "o").exists()


def test_rewrite_checkpoint_changes_fields_and_keeps_weights(tiny_checkpoint, tmp_path):  # noqa: F811
    import shutil

    from crystalflow.checkpoint import rewrite_checkpoint

    path = tmp_path / "copy.pt"
    shutil.copy(tiny_checkpoint, path)
    before = load_checkpoint(path)
    after = rewrite_checkpoint(path, extra={**before.extra, "note": "x"},
                               task_config={**before.task_config, "steps": 3})
    again = load_checkpoint(path)
    assert again.extra["note"] == "x" and again.task_config["steps"] == 3 and after.task_config["steps"] == 3
    assert again.weights.keys() == before.weights.keys()
    assert all(torch.equal(again.weights[k], w) for k, w in before.weights.items())
    assert (again.stats, again.model_config) == (before.stats, before.model_config)
    with pytest.raises(CheckpointError, match="keeps the weights"):
        rewrite_checkpoint(path, weights={})
    assert load_checkpoint(path).extra["note"] == "x"  # a refused rewrite writes nothing
