"""Property-distribution metrics of generated crystals against a reference split.

Definition (CDVAE ``GenEval.get_density_wdist`` / ``get_num_elem_wdist``, reused by DiffCSP and
FlowMM): the 1-D Wasserstein (earth mover's) distance, ``scipy.stats.wasserstein_distance``,
between the densities (g/cm^3) of the *valid* generated samples and those of the reference
structures, and likewise for the number of distinct elements per structure.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pymatgen.core import Structure
from scipy.stats import wasserstein_distance

__all__ = ["densities", "num_elements", "wasserstein_1d", "wasserstein_density", "wasserstein_num_elements"]


def densities(structures: Sequence[Structure]) -> np.ndarray:
    """Mass density of each structure (g/cm^3, pymatgen ``Structure.density``)."""
    return np.array([float(s.density) for s in structures], dtype=float)


def num_elements(structures: Sequence[Structure]) -> np.ndarray:
    """Number of distinct elements of each structure."""
    return np.array([len(s.composition.elements) for s in structures], dtype=float)


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """1-D Wasserstein distance of two value sets ``(n,)`` and ``(m,)``; ``nan`` when either is empty."""
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return float(wasserstein_distance(a, b))


def wasserstein_density(samples: Sequence[Structure], reference: Sequence[Structure]) -> float:
    """CDVAE ``wdist_density``: Wasserstein distance between sample and reference densities.

    Pass only the valid samples to follow CDVAE. ``nan`` when either set is empty.
    """
    return wasserstein_1d(densities(samples), densities(reference))


def wasserstein_num_elements(samples: Sequence[Structure], reference: Sequence[Structure]) -> float:
    """CDVAE ``wdist_num_elems``: Wasserstein distance between numbers of distinct elements.

    Pass only the valid samples to follow CDVAE. ``nan`` when either set is empty.
    """
    return wasserstein_1d(num_elements(samples), num_elements(reference))
