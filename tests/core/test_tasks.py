"""The task table: every task loads its bundled checkpoint through one lookup, with one return
shape, and its flow's checkpoint round trip is exact."""

from __future__ import annotations

import pytest
import torch

from crystalflow.checkpoint import load_checkpoint
from crystalflow.errors import CheckpointError, InputError
from crystalflow.pretrained import TASKS, bundled_checkpoint, get_task, load_pretrained


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_loads_its_bundled_checkpoint_as_flow_and_checkpoint(name):
    flow, ckpt = load_pretrained(task=name)
    assert ckpt.task == name and get_task(name).name == name
    assert not flow.model.training
    if name == "dng":
        assert flow.skeletons is not None and len(flow.skeletons.skeletons) > 0


@pytest.mark.parametrize("name", list(TASKS))
def test_to_checkpoint_and_from_checkpoint_round_trip(name):
    task = get_task(name)
    ckpt = load_checkpoint(bundled_checkpoint(task.default_checkpoint))
    flow = task.from_checkpoint(ckpt, "cpu")
    again = task.to_checkpoint(flow, ckpt.model_name, ckpt.stats, ckpt.weights, None)
    assert (again.task, again.model_name) == (ckpt.task, ckpt.model_name)
    # configs are written in full (older checkpoints may lack keys that have defaults)
    assert {k: again.model_config[k] for k in ckpt.model_config} == ckpt.model_config
    assert {k: again.task_config[k] for k in ckpt.task_config} == ckpt.task_config
    rebuilt = task.from_checkpoint(again, "cpu")
    for key, value in flow.model.state_dict().items():
        assert torch.equal(rebuilt.model.state_dict()[key], value), key


def test_unknown_task_and_a_checkpoint_of_another_task_are_refused():
    with pytest.raises(InputError, match="unknown task 'p1'; tasks: csp, sgcsp, dng, protein"):
        load_pretrained(task="p1")
    with pytest.raises(CheckpointError, match="for task 'sgcsp', not 'csp'"):
        load_pretrained("sgcsp_mp_20.pt", task="csp")
    with pytest.raises(CheckpointError, match="for task 'csp', not 'dng'"):
        load_pretrained("csp_perov_5.pt", task="dng")
