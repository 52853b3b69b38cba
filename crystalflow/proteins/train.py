"""The protein task's part of the shared training entry (:mod:`crystalflow.task_training`).

:func:`load_protein_data` loads the splits (db55_unbound crops for training, dips_test crops held
out), :func:`build_protein` builds :class:`~crystalflow.models.framenet.FrameNet` and
:class:`~crystalflow.proteins.flow.BackboneFlow` (fresh or from an ``--init-from`` checkpoint) with
the checkpoint statistics (:class:`~crystalflow.proteins.stats.ProteinStats`), and
:func:`protein_validator` selects on :func:`heldout_score`, the negative CFM loss on a fixed set
of held-out crops with fixed noise and times (deterministic, cheap, no sampling). Device, processes
(torchrun), EMA, checkpoints and resume are the entry's (:func:`~crystalflow.task_training.train_task`
with the ``protein`` entry of the task table).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable

import torch

from crystalflow.checkpoint import Checkpoint, load_checkpoint
from crystalflow.errors import InputError
from crystalflow.models.framenet import FrameNet, FrameNetConfig
from crystalflow.proteins.dataset import BackboneDataset, load_protein_split
from crystalflow.proteins.flow import BackboneFlow, BackboneFlowConfig
from crystalflow.proteins.pretrained import MODEL_NAME, resolve_protein_checkpoint
from crystalflow.proteins.stats import ProteinStats
from crystalflow.task_training import Built, TrainData, heldout_loss_validator


def heldout_score(flow: BackboneFlow, val_set: BackboneDataset, size: int = 32, batch_size: int = 8,
                  seed: int = 0, device: torch.device | str | None = None) -> Callable[[], float]:
    """A validator returning ``-mean loss`` over ``size`` evenly spaced held-out crops.

    The noise and times are drawn from a generator (on ``device``, default the model's) reseeded
    on every call, so scores of different checkpoints are comparable.
    """
    return heldout_loss_validator(flow, val_set, size=size, batch_size=batch_size, seed=seed, device=device)


@dataclass(frozen=True)
class ProteinTrainOptions:
    """Data, network and validation options of a protein training run.

    Attributes:
        data_dir: data root holding ``proteins/`` (default ``$CRYSTALFLOW_DATA``).
        model_config / flow_config: the network and the flow's training settings.
        crop / stride / min_length: training crops (held-out crops use ``stride = crop``).
        val_size: held-out crops per validation; seed: seed of their noise.
        init: a protein checkpoint to start from (:func:`init_checkpoint`; its network size and
            EMA weights replace ``model_config`` and fresh weights, except that
            ``model_config.self_condition`` adds self-conditioning to a network without it);
            init_from: its name.
    """

    data_dir: str | os.PathLike | None = None
    model_config: FrameNetConfig = FrameNetConfig()
    flow_config: BackboneFlowConfig = BackboneFlowConfig()
    crop: int = 128
    stride: int = 64
    min_length: int = 40
    val_size: int = 32
    seed: int = 0
    init: Checkpoint | None = None
    init_from: str | None = None


def load_protein_data(options: ProteinTrainOptions, progress: bool = False) -> TrainData:
    """``train`` (db55_unbound) crops and ``test`` (dips_test, held out, non-overlapping) crops."""
    train_set = load_protein_split("train", options.data_dir, crop=options.crop, stride=options.stride,
                                   min_length=options.min_length, progress=progress)
    val_set = load_protein_split("test", options.data_dir, crop=options.crop, stride=options.crop,
                                 min_length=options.min_length, progress=progress)
    return TrainData(train_set, val_set, "db55_unbound")


def protein_stats(train_set: BackboneDataset, options: ProteinTrainOptions) -> ProteinStats:
    """The statistics a protein checkpoint records about its training crops."""
    init_from = str(options.init_from) if options.init is not None else None
    return ProteinStats.of_dataset(train_set, crop=options.crop, stride=options.stride,
                                   min_length=options.min_length, init_from=init_from)


def build_protein(data: TrainData, options: ProteinTrainOptions) -> Built:
    """FrameNet and BackboneFlow, fresh or with ``options.init``'s size and (EMA) weights; the
    flow's training settings come from ``options.flow_config``, whose units must match ``init``'s.

    Raises:
        InputError: ``init`` uses another translation unit.
    """
    model_config, init = options.model_config, options.init
    added_sc = False  # self-conditioning added to an init network without it
    if init is not None:
        model_config = FrameNetConfig(**init.model_config)
        added_sc = options.model_config.self_condition and not model_config.self_condition
        if added_sc:
            model_config = replace(model_config, self_condition=True)  # a new, zero-started input
        if init.task_config.get("trans_scale", options.flow_config.trans_scale) != options.flow_config.trans_scale:
            raise InputError("init_from checkpoint uses another translation unit (trans_scale)",
                             parameters=("init_from",))
    model = FrameNet(model_config)
    if init is not None:
        missing, unexpected = model.load_state_dict(init.weights, strict=False)
        new = {f"sc_pair.{k}" for k in model.sc_pair.state_dict()} if added_sc else set()
        if unexpected or set(missing) != new:
            raise InputError(f"init_from checkpoint does not fit the network: missing {missing}, "
                             f"unexpected {unexpected}", parameters=("init_from",))
    stats = protein_stats(data.train, options)
    return Built(BackboneFlow(model, options.flow_config), MODEL_NAME, stats.to_dict())


def protein_validator(flow: BackboneFlow, data: TrainData, options: ProteinTrainOptions,
                      device: torch.device) -> Callable[[], float]:
    """:func:`heldout_score` on ``options.val_size`` held-out crops, evaluated on ``device``."""
    return heldout_score(flow, data.val, size=options.val_size, seed=options.seed, device=device)


def init_checkpoint(path_or_name: str | os.PathLike | None) -> Checkpoint | None:
    """The ``--init-from`` protein checkpoint (a path or bundled name), or None without one.

    Raises:
        InputError: the checkpoint is not a FrameNet protein checkpoint.
    """
    if not path_or_name:
        return None
    ck = load_checkpoint(resolve_protein_checkpoint(path_or_name))
    if ck.task != "protein" or ck.model_name != MODEL_NAME:
        raise InputError(f"init_from needs a protein checkpoint, got task {ck.task!r} "
                         f"(model {ck.model_name!r})", parameters=("init_from",))
    return ck
