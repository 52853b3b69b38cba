"""Training times of the conditional paths: uniform on [0, 1], optionally with more mass late.

Every flow draws one time per example for its CFM loss. Uniform times weight every part of the
path alike; a ``late_fraction`` of the examples drawn from ``U(late_min, 1)`` instead puts more of
the training signal where the final local geometry is decided (the protein flow's
``t_late_fraction``, the space-group flow's ``t_late_fraction``). One function, so every flow
draws its times the same way and a zero fraction is exactly the uniform stream.
"""

from __future__ import annotations

import torch

__all__ = ["sample_times"]


def sample_times(n: int, *, late_fraction: float = 0.0, late_min: float = 0.8,
                 dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """``[n]`` training times: ``U(0, 1)``, each replaced with probability ``late_fraction`` by a
    draw from ``U(late_min, 1)`` (density ``1 - f`` below ``late_min``, ``1 - f + f / (1 -
    late_min)`` above it).

    Draws on the generator's device (else ``device``) and returns on ``device`` when given. With
    ``late_fraction == 0`` it draws exactly ``torch.rand(n)`` (one call), so a run's random stream
    is that of plain uniform times.

    Raises:
        ValueError: ``late_fraction`` outside [0, 1] or ``late_min`` outside [0, 1).
    """
    if not 0.0 <= late_fraction <= 1.0 or not 0.0 <= late_min < 1.0:
        raise ValueError(f"need 0 <= late_fraction <= 1 and 0 <= late_min < 1, got {late_fraction}, {late_min}")
    dev = generator.device if generator is not None else device
    t = torch.rand(n, generator=generator, dtype=dtype, device=dev)
    if late_fraction > 0:
        late = torch.rand(n, generator=generator, dtype=dtype, device=dev) < late_fraction
        t = torch.where(late, late_min + (1 - late_min) * t, t)
    return t.to(device) if device is not None else t
