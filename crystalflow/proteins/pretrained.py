"""Protein checkpoints: assemble them, load them strictly, find the bundled one."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from crystalflow.checkpoint import Checkpoint, load_checkpoint
from crystalflow.errors import CheckpointError
from crystalflow.models.framenet import FrameNet, FrameNetConfig
from crystalflow.flow_checkpoints import BUNDLED_DIR, DEFAULTS, make_flow_checkpoint, resolve_checkpoint
from crystalflow.proteins.flow import BackboneFlow, BackboneFlowConfig

__all__ = ["BUNDLED_DIR", "DEFAULT_CHECKPOINT", "MODEL_NAME", "load_protein_flow", "make_protein_checkpoint",
           "protein_flow_from_checkpoint", "resolve_protein_checkpoint"]

#: the default bundled protein checkpoint
DEFAULT_CHECKPOINT = DEFAULTS["protein"]
#: the network name written into protein checkpoints
MODEL_NAME = "framenet"


def resolve_protein_checkpoint(path_or_name: str | os.PathLike | None = None) -> Path:
    """A user path, a bundled file name, or (None) the default bundled protein checkpoint."""
    return resolve_checkpoint(path_or_name, "protein")


def make_protein_checkpoint(flow: BackboneFlow, stats: dict, weights: dict,
                            train_state: dict | None) -> Checkpoint:
    """The checkpoint of a backbone flow (``task="protein"``)."""
    return make_flow_checkpoint("protein", flow, MODEL_NAME, stats, weights, train_state)


def protein_flow_from_checkpoint(ckpt: Checkpoint, device: str | torch.device = "cpu") -> BackboneFlow:
    """Rebuild a :class:`BackboneFlow` with the checkpoint's (EMA) weights, loaded strictly."""
    if ckpt.task != "protein":
        raise CheckpointError(f"checkpoint is for task {ckpt.task!r}, not 'protein'")
    if ckpt.model_name != MODEL_NAME:
        raise CheckpointError(f"unknown protein model {ckpt.model_name!r}")
    try:
        model = FrameNet(FrameNetConfig(**ckpt.model_config))
        config = BackboneFlowConfig(**ckpt.task_config)
        model.load_state_dict(ckpt.weights, strict=True)
    except (TypeError, ValueError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0]
        raise CheckpointError(f"checkpoint does not fit the protein model: {detail}") from None
    model.to(device).eval()
    return BackboneFlow(model, config)


def load_protein_flow(path_or_name: str | os.PathLike | None = None,
                      device: str | torch.device = "cpu") -> tuple[BackboneFlow, Checkpoint]:
    """Load a backbone flow and its checkpoint (default: the bundled one)."""
    ckpt = load_checkpoint(resolve_protein_checkpoint(path_or_name))
    return protein_flow_from_checkpoint(ckpt, device), ckpt


def strip_checkpoint(ckpt: Checkpoint, **task_config) -> Checkpoint:
    """A copy without training state (for bundling), optionally with task-config overrides
    (e.g. tuned sampling defaults such as ``rot_anti_annealing``)."""
    cfg = BackboneFlowConfig(**{**ckpt.task_config, **task_config}).to_dict()
    return Checkpoint(task=ckpt.task, model_name=ckpt.model_name, model_config=ckpt.model_config,
                      task_config=cfg, stats=ckpt.stats, weights=dict(ckpt.weights),
                      version=ckpt.version, train_state=None, extra=ckpt.extra)
