"""One table of tasks (csp, sgcsp, dng, protein): load any task's flow from a checkpoint, train any task.

Each task's flow class owns its checkpoint round trip (``Flow.from_checkpoint(ckpt, device)`` and
``flow.to_checkpoint(model_name, stats, weights, train_state)``) and each task its training spec
(data, ``build``, validator; run by :func:`crystalflow.task_training.train_task`); :data:`TASKS`
maps task names to them and :func:`load_pretrained` looks the task up, returning
``(flow, checkpoint)`` for every task. The checkpoint plumbing (bundled checkpoints, strict network loading) lives in
:mod:`crystalflow.flow_checkpoints` and is re-exported here, as are the older per-task helpers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from crystalflow.checkpoint import Checkpoint, load_checkpoint
from crystalflow.crystal_tasks.training import CSP_TRAINING, DNG_TRAINING, SGCSP_TRAINING
from crystalflow.crystal_tasks.csp import CSPFlow
from crystalflow.crystal_tasks.dng import DNGFlow, SkeletonDistribution
from crystalflow.errors import InputError
from crystalflow.flow_checkpoints import (
    BUNDLED_DIR,
    DEFAULTS,
    bundled_checkpoint,
    checkpoint_config_errors,
    make_flow_checkpoint,
    model_from_checkpoint,
    resolve_checkpoint,
)
from crystalflow.proteins.pretrained import make_protein_checkpoint, protein_flow_from_checkpoint
from crystalflow.proteins.train import build_protein, load_protein_data, protein_validator
from crystalflow.crystal_tasks.sgcsp import SGCSPFlow
from crystalflow.task_training import TrainingSpec

__all__ = [
    "BUNDLED_DIR", "DEFAULTS", "TASKS", "Task", "bundled_checkpoint", "checkpoint_config_errors",
    "csp_flow_from_checkpoint", "dng_flow_from_checkpoint", "get_task", "load_pretrained",
    "make_csp_checkpoint", "make_dng_checkpoint", "make_flow_checkpoint", "make_sgcsp_checkpoint",
    "model_from_checkpoint", "resolve_checkpoint", "sgcsp_flow_from_checkpoint",
]


@dataclass(frozen=True)
class Task:
    """One entry of the task table.

    Attributes:
        name: the task name written into its checkpoints (``Checkpoint.task``).
        description: one line for listings and error messages.
        from_checkpoint: ``(checkpoint, device) -> flow`` with the (EMA) weights loaded strictly.
        to_checkpoint: ``(flow, model_name, stats, weights, train_state) -> Checkpoint``.
        training: how the task loads its data, builds its flow and validates
            (:class:`~crystalflow.task_training.TrainingSpec`, run by
            :func:`~crystalflow.task_training.train_task`).
    """

    name: str
    description: str
    from_checkpoint: Callable[[Checkpoint, str | torch.device], Any]
    to_checkpoint: Callable[..., Checkpoint]
    training: TrainingSpec

    @property
    def default_checkpoint(self) -> str:
        """File name of the task's default bundled checkpoint."""
        return DEFAULTS[self.name]


def _protein_to_checkpoint(flow, model_name: str, stats: dict, weights: dict,
                           train_state: dict | None) -> Checkpoint:
    return make_protein_checkpoint(flow, stats, weights, train_state)


#: every task, by name
TASKS: dict[str, Task] = {
    "csp": Task("csp", "crystal structure prediction in P1 (CSPFlow)", CSPFlow.from_checkpoint,
                CSPFlow.to_checkpoint, CSP_TRAINING),
    "sgcsp": Task("sgcsp", "structure prediction given space group and Wyckoff template (SGCSPFlow)",
                  SGCSPFlow.from_checkpoint, SGCSPFlow.to_checkpoint, SGCSP_TRAINING),
    "dng": Task("dng", "de-novo generation in a space group (DNGFlow, with .skeletons)",
                DNGFlow.from_checkpoint, DNGFlow.to_checkpoint, DNG_TRAINING),
    "protein": Task("protein", "protein backbone generation (BackboneFlow)", protein_flow_from_checkpoint,
                    _protein_to_checkpoint, TrainingSpec(load_protein_data, build_protein, protein_validator)),
}


def get_task(name: str) -> Task:
    """The task called ``name``.

    Raises:
        InputError: no such task (the message lists the tasks).
    """
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    return TASKS[name]


def load_pretrained(path_or_name: str | os.PathLike | None = None, task: str = "csp",
                    device: str | torch.device = "cpu") -> tuple[Any, Checkpoint]:
    """Load a flow and its checkpoint (default: the bundled checkpoint of ``task``).

    Returns ``(flow, checkpoint)`` for every task: a :class:`~crystalflow.crystal_tasks.csp.CSPFlow`, an
    :class:`~crystalflow.crystal_tasks.sgcsp.SGCSPFlow`, a :class:`~crystalflow.crystal_tasks.dng.DNGFlow` (its skeleton
    distribution in ``flow.skeletons``) or a :class:`~crystalflow.proteins.BackboneFlow`.

    Raises:
        InputError: unknown task. CheckpointError: no such checkpoint, or one of another task or
            that does not fit the code.
    """
    spec = get_task(task)
    ckpt = load_checkpoint(resolve_checkpoint(path_or_name, spec.name))
    return spec.from_checkpoint(ckpt, device), ckpt


# -- per-task names kept for existing callers ---------------------------------------------------


def csp_flow_from_checkpoint(ckpt: Checkpoint, device: str | torch.device = "cpu") -> CSPFlow:
    """Rebuild a :class:`CSPFlow` with the checkpoint's (EMA) weights, loaded strictly."""
    return CSPFlow.from_checkpoint(ckpt, device)


def sgcsp_flow_from_checkpoint(ckpt: Checkpoint, device: str | torch.device = "cpu") -> SGCSPFlow:
    """Rebuild a space-group conditioned :class:`~crystalflow.crystal_tasks.sgcsp.SGCSPFlow` (EMA weights)."""
    return SGCSPFlow.from_checkpoint(ckpt, device)


def dng_flow_from_checkpoint(ckpt: Checkpoint, device: str | torch.device = "cpu"
                             ) -> tuple[DNGFlow, SkeletonDistribution]:
    """Rebuild a :class:`~crystalflow.crystal_tasks.dng.DNGFlow` (EMA weights) and its skeleton distribution."""
    flow = DNGFlow.from_checkpoint(ckpt, device)
    return flow, flow.skeletons


def make_csp_checkpoint(flow: CSPFlow, model_name: str, stats: dict, weights: dict,
                        train_state: dict | None) -> Checkpoint:
    """Assemble the checkpoint of a CSP flow (task ``csp``)."""
    return make_flow_checkpoint("csp", flow, model_name, stats, weights, train_state)


def make_sgcsp_checkpoint(flow: SGCSPFlow, model_name: str, stats: dict, weights: dict,
                          train_state: dict | None) -> Checkpoint:
    """Assemble the checkpoint of a space-group conditioned CSP flow (task ``sgcsp``)."""
    return make_flow_checkpoint("sgcsp", flow, model_name, stats, weights, train_state)


def make_dng_checkpoint(flow: DNGFlow, model_name: str, stats: dict, weights: dict,
                        train_state: dict | None) -> Checkpoint:
    """Assemble the checkpoint of a de-novo generation flow (task ``dng``)."""
    return make_flow_checkpoint("dng", flow, model_name, stats, weights, train_state)
