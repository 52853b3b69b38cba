"""Sampling backbones: integrate the flow in batches and rebuild ideal backbone atoms."""

from __future__ import annotations

from typing import Sequence

import torch

from crystalflow.proteins.flow import BackboneFlow, check_lengths


def generate_backbones(flow: BackboneFlow, lengths: Sequence[int], *, steps: int | None = None,
                       method: str | None = None, rot_anti_annealing: float | None = None,
                       batch_size: int = 8, seed: int = 0,
                       clash_guidance: int | None = None, self_condition: bool = True,
                       clash_radius: float | None = None) -> list[torch.Tensor]:
    """Sample one backbone per requested length.

    Args:
        flow: a trained :class:`BackboneFlow`.
        lengths: chain lengths (each within the flow's supported range).
        steps, method, rot_anti_annealing, clash_guidance, self_condition, clash_radius: solver settings
            (default: the flow config's; see :meth:`BackboneFlow.sample`).
        batch_size: chains integrated together; seed: seeds the prior noise of the whole call.

    Returns:
        ``[L_i, 4, 3]`` float32 N, CA, C, O positions (Angstrom), in the order of ``lengths``.

    Raises:
        InputError: a length outside the supported range.
    """
    lengths = [int(n) for n in lengths]
    check_lengths(lengths, flow.config.min_length, flow.config.max_length)
    g = torch.Generator().manual_seed(seed)
    out: list[torch.Tensor] = []
    for i in range(0, len(lengths), batch_size):
        chunk = lengths[i:i + batch_size]
        frames = flow.sample(chunk, steps=steps, method=method, rot_anti_annealing=rot_anti_annealing,
                             generator=g, clash_guidance=clash_guidance, self_condition=self_condition,
                             clash_radius=clash_radius)
        out += flow.backbones(frames)
    return out
