"""Validation during training: CSP match rate of sampled structures on a fixed slice."""

from __future__ import annotations

from typing import Callable

import torch

from crystalflow.crystals.dataset import CrystalDataset
from crystalflow.crystal_tasks.csp import CSPFlow, conditions_of


def csp_validator(flow: CSPFlow, val_set: CrystalDataset, size: int = 200, steps: int = 50,
                  seed: int = 0, batch_size: int = 512,
                  device: torch.device | str | None = None) -> Callable[[], float]:
    """A callable returning the match rate (validity-filtered, the field's definition) of one
    sample per crystal for the first ``size`` validation crystals (sampled on ``device``,
    default the CPU)."""
    from crystalflow.metrics.csp import csp_metrics

    n = min(size, len(val_set))
    references = [val_set[i].to_structure() for i in range(n)]

    def validate() -> float:
        gen = torch.Generator(device=device or "cpu").manual_seed(seed)
        preds = []
        for lo in range(0, n, batch_size):
            batch = val_set.batch(range(lo, min(n, lo + batch_size)))
            if device is not None:
                batch = batch.to(device)
            out = flow.sample(conditions_of(batch), steps=steps, generator=gen)
            preds.extend([c.to_structure()] for c in out.to_crystals())
        return csp_metrics(preds, references, workers=1, progress=False).match_rate

    return validate


def sgcsp_validator(flow, val_set, size: int = 200, steps: int = 50, seed: int = 0,
                    batch_size: int = 256,
                    device: torch.device | str | None = None) -> Callable[[], float]:
    """Match rate of one space-group conditioned sample per crystal (first ``size`` rows of a
    :class:`~crystalflow.crystals.symmetric.SymmetricDataset`, their own templates), sampled on
    ``device`` (default the CPU)."""
    from crystalflow.metrics.csp import csp_metrics

    n = min(size, len(val_set))
    references = [val_set.structure(i) for i in range(n)]

    def validate() -> float:
        gen = torch.Generator(device=device or "cpu").manual_seed(seed)
        preds = []
        for lo in range(0, n, batch_size):
            out = flow.sample(list(val_set.templates[lo:min(n, lo + batch_size)]), steps=steps,
                              generator=gen, device=device or "cpu")
            preds.extend([c.to_structure()] for c in out.to_crystals())
        return csp_metrics(preds, references, workers=1, progress=False).match_rate

    return validate
