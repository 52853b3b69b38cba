"""Training a backbone flow with the package's shared training loop.

:func:`train_backbone_flow` loads the splits, builds :class:`~crystalflow.models.framenet.FrameNet`
and :class:`~crystalflow.proteins.flow.BackboneFlow`, and hands them to
:func:`crystalflow.training.train`; selection uses :func:`heldout_score`, the negative CFM loss on
a fixed set of held-out crops with fixed noise and times (deterministic, cheap, no sampling).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch

from crystalflow.checkpoint import Checkpoint, load_checkpoint
from crystalflow.errors import InputError
from crystalflow.models.framenet import FrameNet, FrameNetConfig
from crystalflow.proteins.dataset import BackboneDataset, load_protein_split
from crystalflow.proteins.flow import BackboneFlow, BackboneFlowConfig
from crystalflow.proteins.pretrained import MODEL_NAME, make_protein_checkpoint, resolve_protein_checkpoint


def heldout_score(flow: BackboneFlow, val_set: BackboneDataset, size: int = 32, batch_size: int = 8,
                  seed: int = 0) -> Callable[[], float]:
    """A validator returning ``-mean loss`` over ``size`` evenly spaced held-out crops.

    The noise and times are drawn from a generator reseeded on every call, so scores of
    different checkpoints are comparable.
    """
    idx = torch.linspace(0, len(val_set) - 1, min(size, len(val_set))).long().tolist()
    batches = [val_set.batch(idx[i:i + batch_size]) for i in range(0, len(idx), batch_size)]

    @torch.no_grad()
    def validate() -> float:
        g = torch.Generator().manual_seed(seed)
        device = next(flow.model.parameters()).device
        losses = [float(flow.loss(b.to(device), generator=g).total) for b in batches]
        return -sum(losses) / len(losses)

    return validate


@dataclass(frozen=True)
class ProteinTrainSetup:
    """What :func:`train_backbone_flow` built: the flow, the data and the checkpoint statistics."""

    flow: BackboneFlow
    train_set: BackboneDataset
    val_set: BackboneDataset
    stats: dict


def build_setup(data_dir: str | os.PathLike | None, model_config: FrameNetConfig,
                flow_config: BackboneFlowConfig, crop: int = 128, stride: int = 64,
                min_length: int = 40, progress: bool = False,
                init: Checkpoint | None = None) -> ProteinTrainSetup:
    """Load ``train`` (db55_unbound) and ``test`` (dips_test, held out) crops and build the flow.

    With ``init`` (a protein checkpoint, see :func:`init_checkpoint`) the network takes that
    checkpoint's size and (EMA) weights instead of ``model_config`` and fresh weights; the flow's
    training settings still come from ``flow_config``, its units must match the checkpoint's.
    """
    if init is not None:
        model_config = FrameNetConfig(**init.model_config)
        if init.task_config.get("trans_scale", flow_config.trans_scale) != flow_config.trans_scale:
            raise InputError("--init-from checkpoint uses another translation unit (trans_scale)")
    train_set = load_protein_split("train", data_dir, crop=crop, stride=stride,
                                   min_length=min_length, progress=progress)
    val_set = load_protein_split("test", data_dir, crop=crop, stride=crop,
                                 min_length=min_length, progress=progress)
    model = FrameNet(model_config)
    if init is not None:
        model.load_state_dict(init.weights, strict=True)
    flow = BackboneFlow(model, flow_config)
    stats = {
        "dataset": "db55_unbound", "heldout": "dips_test", "crop": crop, "stride": stride,
        "min_segment_length": min_length, "train_segments": train_set.num_segments,
        "train_crops": len(train_set), "train_residues": int(train_set.seg_lengths.sum()),
    }
    return ProteinTrainSetup(flow, train_set, val_set, stats)


def init_checkpoint(path_or_name: str | os.PathLike | None) -> Checkpoint | None:
    """The ``--init-from`` protein checkpoint (a path or bundled name), or None without one.

    Raises:
        InputError: the checkpoint is not a FrameNet protein checkpoint.
    """
    if not path_or_name:
        return None
    ck = load_checkpoint(resolve_protein_checkpoint(path_or_name))
    if ck.task != "protein" or ck.model_name != MODEL_NAME:
        raise InputError(f"--init-from needs a protein checkpoint, got task {ck.task!r} "
                         f"(model {ck.model_name!r})")
    return ck


def checkpoint_maker(setup: ProteinTrainSetup):
    """``(weights, train_state) -> Checkpoint`` for :func:`crystalflow.training.train`."""
    return lambda w, s: make_protein_checkpoint(setup.flow, setup.stats, w, s)
