"""Checkpoint plumbing shared by every task: finding checkpoints (bundled or user paths), rebuilding
a checkpoint's network strictly, assembling a flow's checkpoint.

Below the task modules (:mod:`crystalflow.crystal_tasks.csp`, :mod:`crystalflow.crystal_tasks.sgcsp`, :mod:`crystalflow.crystal_tasks.dng`,
:mod:`crystalflow.proteins`), which build their flows from checkpoints with it, and below the task
table of :mod:`crystalflow.pretrained`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar, TypeVar

import torch

from crystalflow import __version__
from crystalflow.checkpoint import Checkpoint
from crystalflow.errors import CheckpointError, CrystalflowError
from crystalflow.models import build_model

__all__ = ["BUNDLED_DIR", "DEFAULTS", "TaskFlow", "bundled_checkpoint", "check_task", "checkpoint_config_errors",
           "make_flow_checkpoint", "model_from_checkpoint", "rebuild_flow", "resolve_checkpoint"]

F = TypeVar("F")

#: directory of the checkpoints shipped inside the package
BUNDLED_DIR = Path(__file__).parent / "checkpoints"
#: the default bundled checkpoint of each task
DEFAULTS = {"csp": "csp_mp_20.pt", "sgcsp": "sgcsp_mp_20.pt", "dng": "dng_mp_20.pt",
            "protein": "protein_db55.pt"}


def bundled_checkpoint(name: str) -> Path:
    """Path of a bundled checkpoint by file name (e.g. ``csp_perov_5.pt``)."""
    path = BUNDLED_DIR / name
    if not path.is_file():
        available = sorted(p.name for p in BUNDLED_DIR.glob("*.pt"))
        raise CheckpointError(f"no bundled checkpoint {name!r}; bundled: {available}")
    return path


def resolve_checkpoint(path_or_name: str | os.PathLike | None, task: str) -> Path:
    """A user path, a bundled file name, or (None) the task's default bundled checkpoint."""
    if path_or_name is None:
        return bundled_checkpoint(DEFAULTS[task])
    p = Path(path_or_name)
    if p.is_file():
        return p
    if (BUNDLED_DIR / str(path_or_name)).is_file():
        return BUNDLED_DIR / str(path_or_name)
    raise CheckpointError(f"no such checkpoint: {path_or_name}")


def check_task(ckpt: Checkpoint, task: str) -> None:
    """Raise :class:`CheckpointError` unless the checkpoint was written by ``task``."""
    if ckpt.task != task:
        raise CheckpointError(f"checkpoint is for task {ckpt.task!r}, not {task!r}")


@contextlib.contextmanager
def checkpoint_config_errors(what: str = "checkpoint") -> Iterator[None]:
    """Turn a config that does not fit the code (unknown or missing keys, bad values) into one
    :class:`CheckpointError` line instead of a traceback."""
    try:
        yield
    except CrystalflowError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise CheckpointError(f"{what} has a config this version cannot use: {detail}") from None


def model_from_checkpoint(ckpt: Checkpoint, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The checkpoint's network with its (EMA) weights loaded strictly, in eval mode."""
    with checkpoint_config_errors():
        model = build_model(ckpt.model_name, ckpt.model_config)
    try:
        model.load_state_dict(ckpt.weights, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"weights do not fit the model: {detail}") from None
    return model.to(device).eval()


def make_flow_checkpoint(task: str, flow, model_name: str, stats: dict, weights: dict,
                         train_state: dict | None) -> Checkpoint:
    """Assemble the checkpoint of any flow (``task``: csp, sgcsp, dng, protein): the network's
    name and config, the flow's config, data statistics, weights and (while training) the train
    state."""
    return Checkpoint(
        task=task, model_name=model_name, model_config=flow.model.config.to_dict(),
        task_config=flow.config.to_dict(), stats=stats, weights=weights, version=__version__,
        train_state=train_state,
    )


def rebuild_flow(ckpt: Checkpoint, task: str, device: str | torch.device,
                 build: Callable[[torch.nn.Module], F]) -> F:
    """A task's flow from its checkpoint: the task checked, the network rebuilt with its (EMA)
    weights loaded strictly, then ``build(model)`` (which reads configs and statistics) with
    config errors reported as one :class:`CheckpointError` line."""
    check_task(ckpt, task)
    model = model_from_checkpoint(ckpt, device)
    with checkpoint_config_errors():
        return build(model)


class TaskFlow:
    """Base of a task's flow: ``task`` names it; ``model`` (with a ``config``) and ``config``
    are what its checkpoint records."""

    task: ClassVar[str]

    def to_checkpoint(self, model_name: str, stats: dict, weights: dict,
                      train_state: dict | None) -> Checkpoint:
        """The flow's checkpoint (network name and config, flow config, data statistics, weights)."""
        return make_flow_checkpoint(self.task, self, model_name, stats, weights, train_state)
