"""The shared training entry on 2 processes (gloo on localhost) for sgcsp, dng and protein.

Mirrors :mod:`tests.core.test_distributed` (P1 CSP) through each task's own ``build`` from the
task table: 2 processes give the gradient of one process on the combined batch, and 2 steps +
resume give the run of 4 uninterrupted steps (through :func:`crystalflow.task_training.train_task`).
One spawn runs every distributed part; tiny networks on 16 symmetric crystals built from Wyckoff
templates and on 18 crops of two random backbone chains (no benchmark data).
"""

from __future__ import annotations

import gc
from dataclasses import replace

import pytest
import torch

from crystalflow.checkpoint import load_checkpoint
from crystalflow.crystal_tasks.training import CrystalTrainOptions
from crystalflow.distributed import DistInfo, shard
from crystalflow.losses import LossOutput
from crystalflow.models.framenet import FrameNetConfig
from crystalflow.pretrained import TASKS
from crystalflow.proteins.dataset import BackboneDataset
from crystalflow.proteins.flow import BackboneFlowConfig
from crystalflow.proteins.train import ProteinTrainOptions
from crystalflow.task_training import TrainData, TrainingSpec, prepare
from crystalflow.training import TrainConfig, batch_indices

from tests.core._ddp import join_group, spawn_workers
from tests.sgcsp.conftest import TEMPLATES, make_dataset

TASK_NAMES = ("sgcsp", "dng", "protein")
CRYSTAL_OPTIONS = CrystalTrainOptions(dataset="tiny", hidden=16, layers=1, val_size=2, val_steps=2)
PROTEIN_OPTIONS = ProteinTrainOptions(
    model_config=FrameNetConfig(hidden=16, pair=8, layers=1, heads=2, head_dim=8, query_points=2,
                                value_points=2, time_dim=8),
    flow_config=BackboneFlowConfig(aux_weight=0.25), crop=16, stride=4, min_length=16, val_size=4)
GRAD_CFG = TrainConfig(batch_size=8, seed=0)
RUN_CFG = TrainConfig(max_steps=4, batch_size=6, lr=1e-2, warmup_steps=10, val_every=2, seed=1)


def tiny_data() -> TrainData:
    """16 symmetric crystals (two of every crystal family), also the validation set."""
    ds = make_dataset(TEMPLATES * 2, seed=3)
    return TrainData(ds, ds, "tiny")


def tiny_backbones() -> TrainData:
    """Two random 48-residue chains (CA steps of 3.8 A, N / C / O jittered around CA) cut into
    18 crops of 16 residues; also the validation set."""
    g = torch.Generator().manual_seed(4)
    steps = torch.randn(96, 3, generator=g, dtype=torch.float64)
    ca = (3.8 * steps / steps.norm(dim=-1, keepdim=True)).cumsum(0)
    atoms = ca[:, None, :] + 1.2 * torch.randn(96, 4, 3, generator=g, dtype=torch.float64)
    atoms[:, 1] = ca
    ds = BackboneDataset(atoms.float(), torch.tensor([48, 48]), ("a:A:1", "b:A:1"),
                         torch.zeros(0, 3, dtype=torch.long)).with_crops(16, 4, 16)
    return TrainData(ds, ds, "tiny")


def options_of(task: str):
    return PROTEIN_OPTIONS if task == "protein" else CRYSTAL_OPTIONS


def tiny_spec(task: str) -> TrainingSpec:
    """The task's own spec with the tiny data in place of a benchmark."""
    spec = TASKS[task].training
    load = (lambda options, progress: tiny_backbones()) if task == "protein" else (lambda o, p: tiny_data())
    return TrainingSpec(load, spec.build, spec.validator, spec.score_key)


class Indices:
    """A training set whose batches are their row indices (for :class:`ItemwiseNoise`)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def batch(self, indices) -> list[int]:
        return list(indices)


class ItemwiseNoise:
    """A task flow whose loss is the mean over crystals of its loss on each crystal alone, with
    noise seeded by the crystal's row: a shard then sees exactly the noise its crystals get in the
    combined batch, and with equal shards the mean of the shard means is the batch mean."""

    def __init__(self, flow, dataset) -> None:
        self.flow, self.dataset = flow, dataset

    @property
    def model(self) -> torch.nn.Module:
        return self.flow.model

    @model.setter
    def model(self, module: torch.nn.Module) -> None:  # the loop swaps in the DDP wrapper
        self.flow.model = module

    def loss(self, rows: list[int], generator=None) -> LossOutput:
        totals = [self.flow.loss(self.dataset.batch([i]), generator=torch.Generator().manual_seed(i)).total
                  for i in rows]
        return LossOutput(total=torch.stack(totals).mean(), parts={})


def _worker(rank: int, world: int, port: int, tmp: str) -> None:
    info = join_group(rank, world, port)
    from crystalflow import distributed
    from crystalflow.task_training import RunSettings, train_task
    from crystalflow.training import local_loss

    try:
        for task in TASK_NAMES:
            # 1. one step's gradient through DistributedDataParallel (rank 1 builds other weights)
            data, built = prepare(tiny_spec(task), options_of(task), info, seed=rank)
            flow = ItemwiseNoise(built.flow, data.train)
            module = distributed.wrap(flow.model, info)
            out = local_loss(flow, module, Indices(len(data.train)), 0, GRAD_CFG, info, torch.Generator())
            out.total.backward()
            torch.save({"grads": {n: p.grad for n, p in flow.model.named_parameters()},
                        "params": flow.model.state_dict()}, f"{tmp}/{task}_grad{rank}.pt")
            del module, out  # free the DDP reducer while the group exists
            gc.collect()
            # 2. an uninterrupted 4-step run against 2 steps + resume for 2 more
            for out_dir, steps, resume in (("full", 4, False), ("split", 2, False), ("split", 4, True)):
                cfg = TrainConfig(**{**RUN_CFG.to_dict(), "max_steps": steps})
                settings = RunSettings(f"{tmp}/{task}_{out_dir}", cfg, device="cpu", resume=resume,
                                       progress=False)
                train_task(replace(TASKS[task], training=tiny_spec(task)), options_of(task), settings)
        distributed.barrier(info)
    finally:
        distributed.cleanup()


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    return spawn_workers(_worker, tmp_path_factory.mktemp("ddp_tasks"))


@pytest.mark.parametrize("task", TASK_NAMES)
def test_two_process_gradients_equal_one_process_on_the_combined_batch(two_process_run, task):
    data, built = prepare(tiny_spec(task), options_of(task), DistInfo(), seed=0)
    flow = ItemwiseNoise(built.flow, data.train)
    idx = batch_indices(len(data.train), GRAD_CFG.batch_size, 0, GRAD_CFG.seed)
    flow.loss(idx).total.backward()
    ref = {n: p.grad.clone() for n, p in flow.model.named_parameters() if p.grad is not None}
    assert ref, "no gradient"
    for rank in (0, 1):  # the model rank 1 built (seed 1) was replaced by rank 0's
        got = torch.load(two_process_run / f"{task}_grad{rank}.pt")
        for n, v in flow.model.state_dict().items():
            assert torch.equal(got["params"][n], v), n
        for n, g in ref.items():
            torch.testing.assert_close(got["grads"][n], g, rtol=1e-4, atol=1e-6, msg=n)
    # control: one shard alone gives a different gradient, so the agreement is not trivial
    flow.model.zero_grad()
    flow.loss(shard(idx, DistInfo(rank=0, world_size=2))).total.backward()
    diff = max((p.grad - ref[n]).abs().max().item() for n, p in flow.model.named_parameters() if n in ref)
    assert diff > 1e-4


@pytest.mark.parametrize("task", TASK_NAMES)
def test_two_process_resume_continues_the_same_run(two_process_run, task):
    full = load_checkpoint(two_process_run / f"{task}_full" / "last.pt")
    split = load_checkpoint(two_process_run / f"{task}_split" / "last.pt")
    assert full.task == split.task == task
    assert full.train_state["step"] == split.train_state["step"] == 4
    assert full.train_state["world_size"] == 2 and len(full.train_state["rng"]) == 2
    _, start = prepare(tiny_spec(task), options_of(task), DistInfo(), seed=RUN_CFG.seed)
    start = start.flow.model.state_dict()
    moved = 0.0
    for n, v in full.train_state["model"].items():
        torch.testing.assert_close(split.train_state["model"][n], v, rtol=1e-6, atol=1e-7, msg=n)
        torch.testing.assert_close(split.weights[n], full.weights[n], rtol=1e-6, atol=1e-7, msg=n)
        if v.dtype.is_floating_point:
            moved = max(moved, (v - start[n]).abs().max().item())
    assert moved > 1e-3  # training did change the weights
    log = (two_process_run / f"{task}_split" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3", "4"]
    assert TASKS[task].from_checkpoint(split, "cpu") is not None  # the checkpoint loads strictly


@pytest.mark.parametrize("task", ("csp", "sgcsp", "dng", "protein"))
def test_the_entry_puts_network_and_batches_on_the_requested_device(task):
    """No task refuses a device: on ``meta`` (a device without memory, standing in for CUDA) every
    parameter of the built network and every tensor of a training batch land there."""
    spec = TASKS[task].training if task != "csp" else None
    if spec is None:  # P1 CSP on P1 cells of the same crystals
        from crystalflow.crystals.dataset import CrystalDataset

        sym = make_dataset(TEMPLATES * 2, seed=3)
        p1 = CrystalDataset.from_crystals([sym.batch([i]).to_crystals()[0] for i in range(len(sym))])
        base = TASKS["csp"].training
        spec = TrainingSpec(lambda o, p: TrainData(p1, p1, "tiny"), base.build, base.validator)
    else:
        spec = tiny_spec(task)
    meta = torch.device("meta")
    data, built = prepare(spec, options_of(task), DistInfo(device=meta), seed=0)
    assert all(p.device == meta for p in built.flow.model.parameters())
    batch = data.train.batch([0, 1, 2]).to(meta)
    tensors = [v for v in vars(batch).values() if isinstance(v, torch.Tensor)]
    if getattr(batch, "symmetry", None) is not None:
        tensors += [v for v in vars(batch.symmetry).values() if isinstance(v, torch.Tensor)]
    assert tensors and all(t.device == meta for t in tensors)


#: (option, a value away from its default) for every entry of TASK_OPTIONS
AWAY_FROM_DEFAULT = {"data": "crystals.csv", "align_orbits": True, "self_condition": True,
                     "t_late_fraction": 0.5, "train_on_val": True, "low_symmetry_repeats": 2}


@pytest.mark.parametrize("task", ("csp", "sgcsp", "dng"))
def test_tasks_refuse_options_they_cannot_use_before_reading_data(task):
    """Every option of ``TASK_OPTIONS`` set for a task that does not use it is refused, not
    ignored: by the task's ``check_options`` and by :func:`prepare` before ``load_data`` runs; the
    message names the parameters (the CLI shows --align-orbits / --task). The options the task
    does use pass."""
    from crystalflow.cli import flag_message
    from crystalflow.crystal_tasks.training import TASK_OPTIONS
    from crystalflow.errors import InputError

    assert set(AWAY_FROM_DEFAULT) == set(TASK_OPTIONS)
    spec = TASKS[task].training

    def no_data(options, progress):
        raise AssertionError("data read before the options were checked")

    unread = replace(spec, load_data=no_data)
    for option, tasks in TASK_OPTIONS.items():
        options = replace(CRYSTAL_OPTIONS, **{option: AWAY_FROM_DEFAULT[option]})
        if task in tasks:
            spec.check_options(options)
            continue
        for call in (lambda: spec.check_options(options),
                     lambda: prepare(unread, options, DistInfo(), seed=0)):
            with pytest.raises(InputError) as info:
                call()
            flag = "--" + option.replace("_", "-")
            which = f"--task {tasks[0]} only" if len(tasks) == 1 else f"tasks {' and '.join(tasks)}"
            assert flag_message(info.value) == f"{flag} applies to {which}, not --task {task}"


def test_dng_continues_a_dng_checkpoint_whole(tmp_path):
    """``init_from`` a dng checkpoint: same weights, chart and sampling defaults as the file."""
    from dataclasses import replace as dc_replace

    from crystalflow.checkpoint import save_checkpoint
    from crystalflow.crystal_tasks.dng import DNGConfig
    from crystalflow.pretrained import make_dng_checkpoint

    data = tiny_data()
    first = TASKS["dng"].training.build(data, CRYSTAL_OPTIONS)
    first.flow.config = DNGConfig(lattice_weight=0.25, type_temperature=0.8, geometry="sgcsp_mp_20.pt")
    torch.nn.init.normal_(next(first.flow.model.parameters()))
    path = tmp_path / "dng.pt"
    save_checkpoint(make_dng_checkpoint(first.flow, "dngnet", first.stats, first.flow.model.state_dict(), None), path)
    again = TASKS["dng"].training.build(data, dc_replace(CRYSTAL_OPTIONS, init_from=str(path)))
    for (k, a), b in zip(first.flow.model.state_dict().items(), again.flow.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert again.flow.config == first.flow.config
    assert again.flow.chart.state_dict() == first.flow.chart.state_dict()
    assert again.stats["init_from"] == str(path)
    weighted = TASKS["dng"].training.build(data, dc_replace(CRYSTAL_OPTIONS, init_from=str(path), lattice_weight=2.0))
    assert weighted.flow.config.lattice_weight == 2.0 and weighted.flow.config.geometry == "sgcsp_mp_20.pt"
