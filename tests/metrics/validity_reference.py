"""A small, deterministic reference set of crystals for the validity cross-check.

``reference_structures()`` builds random crystals (random lattices, positions and compositions
drawn from a fixed pool of elements, including edge cases such as He, Xe and Pm) from a fixed seed,
so that every run sees the same set without shipping files. Their validity labels were computed
once by an independent implementation of the documented definitions
(``scripts/make_validity_reference.py``: ASE neighbour lists for distances, SMACT's own
``neutral_ratios`` and Pauling test for compositions) and stored in ``validity_reference_labels.py``.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice, Structure

SEED = 20240601
NUM_STRUCTURES = 300

ELEMENT_POOL = (
    "H Li B C N O F Na Mg Al Si P S Cl K Ca Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge Se Br Sr Y Zr Nb Mo "
    "Sn Sb Te I Ba La Pm Bi He Xe"
).split()


def reference_structures(n: int = NUM_STRUCTURES, seed: int = SEED) -> list[Structure]:
    """``n`` random crystals: 1-4 elements, 1-4 atoms each, 0.05-20 A^3 per atom (log-uniform), angles 65-115 deg."""
    rng = np.random.default_rng(seed)
    out: list[Structure] = []
    while len(out) < n:
        k = int(rng.integers(1, 5))
        elements = list(rng.choice(ELEMENT_POOL, size=k, replace=False))
        counts = [int(c) for c in rng.integers(1, 5, size=k)]
        species = [e for e, c in zip(elements, counts) for _ in range(c)]
        angles = rng.uniform(65, 115, size=3)
        ratios = rng.uniform(0.7, 1.4, size=3)
        try:
            unit = Lattice.from_parameters(*ratios, *angles)
        except Exception:
            continue
        if not np.isfinite(unit.volume) or unit.volume < 0.2:
            continue
        volume = len(species) * float(np.exp(rng.uniform(np.log(0.05), np.log(20.0))))
        scale = (volume / unit.volume) ** (1 / 3)
        lattice = Lattice.from_parameters(*(ratios * scale), *angles)
        coords = rng.random((len(species), 3))
        out.append(Structure(lattice, species, coords))
    return out
