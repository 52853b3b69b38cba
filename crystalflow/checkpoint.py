"""Checkpoints: one file = weights + config + data statistics + version; strict, safe loading.

A checkpoint is a dict of plain Python types and tensors, saved with ``torch.save`` through a
temporary file and ``os.replace`` (an interruption never leaves a half-written file) and loaded
with ``weights_only=True`` (no arbitrary code runs on load).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from crystalflow.errors import CheckpointError

FORMAT = "crystalflow-checkpoint-v1"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        task: e.g. ``"csp"``; model_name / model_config: the network and its config;
        task_config: the flow's config; stats: data statistics (lattice chart, max atoms, dataset);
        weights: the (EMA) weights to sample with; train_state: optimiser etc. or None;
        version: crystalflow version that wrote it.
    """

    task: str
    model_name: str
    model_config: dict
    task_config: dict
    stats: dict
    weights: dict[str, torch.Tensor]
    version: str
    train_state: dict | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": self.version, "task": self.task,
            "model": {"name": self.model_name, "config": self.model_config},
            "task_config": self.task_config, "stats": self.stats, "weights": self.weights,
            "train_state": self.train_state, "extra": self.extra,
        }


def torch_save_atomic(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary file in the same directory and ``os.replace``: an
    interruption or a full disk never leaves a half-written or temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike) -> None:
    """Write atomically (:func:`torch_save_atomic`)."""
    torch_save_atomic(ckpt.to_dict(), path)


def rewrite_checkpoint(path: str | os.PathLike, **changes: Any) -> Checkpoint:
    """Replace fields of the checkpoint at ``path`` (``task_config=...``, ``stats=...``,
    ``extra=...``) and write it back atomically; the weights must read back unchanged.

    Raises:
        CheckpointError: ``changes`` touch the weights, or they do not read back identical.
    """
    if "weights" in changes:
        raise CheckpointError("rewrite_checkpoint keeps the weights; save a new checkpoint instead")
    before = load_checkpoint(path)
    save_checkpoint(replace(before, **changes), path)
    after = load_checkpoint(path)
    if before.weights.keys() != after.weights.keys() or not all(
            torch.equal(after.weights[k], w) for k, w in before.weights.items()):
        raise CheckpointError(f"{path}: weights changed on rewrite")
    return after


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load with ``weights_only=True``; raise :class:`CheckpointError` on anything unexpected."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint: {path}")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {_load_failure(exc)}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file")
    try:
        return Checkpoint(
            task=blob["task"], model_name=blob["model"]["name"], model_config=blob["model"]["config"],
            task_config=blob["task_config"], stats=blob["stats"], weights=blob["weights"],
            version=blob["version"], train_state=blob.get("train_state"), extra=blob.get("extra") or {},
        )
    except KeyError as exc:
        raise CheckpointError(f"{path} lacks field {exc}") from exc


def _load_failure(exc: Exception) -> str:
    """One line saying why ``torch.load`` failed, without torch's advice to load with
    ``weights_only=False`` (that would run whatever code the file holds)."""
    text = str(exc)
    for line in text.splitlines():
        if "WeightsUnpickler error" in line:
            return ("it holds objects a safe (weights-only) load refuses: "
                    + line.split("WeightsUnpickler error:", 1)[-1].strip())
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return first if "weights_only" not in first else "not a weights-only checkpoint file"
