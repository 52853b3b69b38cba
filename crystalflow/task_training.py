"""One training entry for every task (csp, sgcsp, dng, protein).

A task brings a :class:`TrainingSpec`: how to load its data, how to build its network and flow
(``build(data, options) -> Built``) and its validator; :func:`train_task` does everything else
once for all tasks: the device and the processes (``torchrun`` data parallel through
:mod:`crystalflow.distributed`, gloo on CPU, nccl on CUDA), CPU threads, seeding, the order in
which processes read the data (rank 0 parses and caches first), and then
:func:`crystalflow.training.train` (EMA, atomic checkpoints, resume, SIGINT / SIGTERM, log) with the
task's checkpoint round trip (``Task.to_checkpoint`` of :mod:`crystalflow.pretrained`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch

from crystalflow import distributed
from crystalflow.distributed import DistInfo
from crystalflow.training import TrainConfig, TrainResult, train

__all__ = ["Built", "RunSettings", "TrainData", "TrainingSpec", "accept_all_options", "heldout_loss_validator",
           "prepare", "process_info", "train_task"]


@dataclass(frozen=True)
class TrainData:
    """A task's training data.

    Attributes:
        train: the training set (``batch(indices)``, ``len``).
        val: the validation set, or None when validation is off.
        name: the data's name recorded in the checkpoint (benchmark or ``user:PATH``).
    """

    train: Any
    val: Any
    name: str


@dataclass(frozen=True)
class Built:
    """What a task's ``build`` returns: the flow (with ``.model``), the network's registered name
    and the data statistics its checkpoints record (a plain dict)."""

    flow: Any
    model_name: str
    stats: dict


def accept_all_options(options: Any) -> None:
    """The default :attr:`TrainingSpec.check_options`: a task that refuses no option."""


@dataclass(frozen=True)
class TrainingSpec:
    """A task's part of training.

    Attributes:
        load_data: ``(options, progress) -> TrainData``.
        build: ``(data, options) -> Built`` (network on the CPU; the entry moves it).
        validator: ``(flow, data, options, device) -> (() -> score) | None``; called on rank 0 only,
            the score is maximised.
        score_key: the name of the best score in the command's JSON summary.
        check_options: ``(options) -> None``, raising :class:`~crystalflow.errors.InputError` on
            options this task cannot use; run before any data is read (by :func:`prepare`, and by
            a command before it touches its run folder). Default: every option is accepted.
    """

    load_data: Callable[[Any, bool], TrainData]
    build: Callable[[TrainData, Any], Built]
    validator: Callable[[Any, TrainData, Any, torch.device], Callable[[], float] | None]
    score_key: str = "best_val_score"
    check_options: Callable[[Any], None] = accept_all_options


@dataclass(frozen=True)
class RunSettings:
    """What the entry handles for every task.

    Attributes:
        out: run folder (``last.pt``, ``best.pt``, ``log.csv``).
        config: optimisation settings (``batch_size`` is the global batch of all processes).
        device: ``cpu``, ``cuda``, ``cuda:K`` or ``meta``... (None: cpu in one process, under
            torchrun ``cuda:LOCAL_RANK`` when CUDA is available).
        threads: torch CPU threads (None: torch's default).
        resume: continue from ``out/last.pt``.
        progress: progress bars (rank 0 only).
    """

    out: str | os.PathLike
    config: TrainConfig
    device: str | None = None
    threads: int | None = None
    resume: bool = False
    progress: bool = True


def process_info(device: str | None) -> DistInfo:
    """This process's place: under torchrun the process group is started
    (:func:`crystalflow.distributed.setup`); alone, one process on ``device`` (default cpu)."""
    if distributed.launched_by_torchrun():
        return distributed.setup(device)
    return DistInfo(device=torch.device(device or "cpu"))


def _load_in_rank_order(spec: TrainingSpec, options, info: DistInfo, progress: bool) -> TrainData:
    """Rank 0 loads (and caches) first, the other processes then read the cache."""
    if not info.is_main:
        distributed.barrier(info)
    data = spec.load_data(options, progress)
    if info.is_main:
        distributed.barrier(info)
    return data


def prepare(spec: TrainingSpec, options, info: DistInfo, seed: int,
            progress: bool = False) -> tuple[TrainData, Built]:
    """Check the options, load the data and build the task's flow, its network moved to ``info.device``.

    The global seed is set first, so every process builds the same initial weights (DDP
    broadcasts rank 0's anyway).
    """
    spec.check_options(options)
    torch.manual_seed(seed)
    data = _load_in_rank_order(spec, options, info, progress)
    built = spec.build(data, options)
    built.flow.model.to(info.device)
    return data, built


def train_task(task, options, settings: RunSettings) -> tuple[TrainResult, Built, DistInfo]:
    """Train ``task`` (an entry of :data:`crystalflow.pretrained.TASKS` with a ``training`` spec).

    Args:
        task: the task (``name``, ``to_checkpoint``, ``training``).
        options: the task's options (``seed`` used for the weights and validation).
        settings: device, threads, run folder, optimisation, resume.

    Returns:
        ``(result, built, info)``: the loop's result, the flow and statistics, this process's place.
    """
    if settings.threads:
        torch.set_num_threads(settings.threads)
    owns_group = not distributed.group_started()  # a caller's process group is left running
    info = process_info(settings.device)
    try:
        progress = settings.progress and info.is_main
        data, built = prepare(task.training, options, info, settings.config.seed, progress)
        validate = task.training.validator(built.flow, data, options, info.device) if info.is_main else None

        def make_checkpoint(weights: dict, state: dict | None):
            return task.to_checkpoint(built.flow, built.model_name, built.stats, weights, state)

        result = train(built.flow, data.train, settings.config, settings.out,
                       make_checkpoint=make_checkpoint, validate=validate, resume=settings.resume,
                       progress=progress, dist_info=info)
    finally:
        if owns_group:
            distributed.cleanup()
    return result, built, info


def heldout_loss_validator(flow, val_set, size: int = 32, batch_size: int = 8, seed: int = 0,
                           device: torch.device | str | None = None,
                           evenly_spaced: bool = True) -> Callable[[], float]:
    """A validator returning ``-mean loss`` over ``size`` held-out items with fixed noise.

    The items are evenly spaced over ``val_set`` (or its first ``size``); the noise and times come
    from a generator on ``device`` reseeded on every call, so scores of different checkpoints are
    comparable. Deterministic and cheap: no sampling.
    """
    n = min(size, len(val_set))
    if evenly_spaced:
        idx = torch.linspace(0, len(val_set) - 1, n).long().tolist()
    else:
        idx = list(range(n))
    batches = [val_set.batch(idx[i:i + batch_size]) for i in range(0, len(idx), batch_size)]

    @torch.no_grad()
    def validate() -> float:
        here = torch.device(device) if device is not None else next(flow.model.parameters()).device
        g = torch.Generator(device=here).manual_seed(seed)
        losses = [float(flow.loss(b.to(here), generator=g).total) for b in batches]
        return -sum(losses) / len(losses)

    return validate
