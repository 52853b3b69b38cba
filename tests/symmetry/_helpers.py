"""Random templates and checks shared by the symmetry tests."""

from __future__ import annotations

import numpy as np
import torch

from crystalflow.symmetry import WyckoffTemplate, wyckoff_positions

#: Space-group numbers of each crystal system (trigonal and hexagonal apart).
SYSTEMS = {
    "triclinic": (1, 2),
    "monoclinic": (3, 15),
    "orthorhombic": (16, 74),
    "tetragonal": (75, 142),
    "trigonal": (143, 167),
    "hexagonal": (168, 194),
    "cubic": (195, 230),
}

#: Groups always tested: origin-choice groups, rhombohedral, centred monoclinic, large cubic.
FIXED_GROUPS = (1, 2, 12, 15, 48, 62, 70, 139, 142, 148, 166, 191, 194, 221, 225, 227, 229, 230)


def groups_per_system(seed: int = 0, per_system: int = 2) -> list[int]:
    """A few random groups of every crystal system plus the fixed tricky ones."""
    rng = np.random.default_rng(seed)
    out = set(FIXED_GROUPS)
    for low, high in SYSTEMS.values():
        out.update(int(n) for n in rng.integers(low, high + 1, size=per_system))
    return sorted(out)


def random_template(
    space_group: int, rng: np.random.Generator, max_orbits: int = 4, max_atoms: int = 200
) -> WyckoffTemplate:
    """A random valid template (parameter-free positions used once, at most ``max_atoms``)."""
    wps = wyckoff_positions(space_group)
    letters, types, used, atoms = [], [], set(), 0
    for _ in range(int(rng.integers(1, max_orbits + 1))):
        choices = [
            wp
            for wp in wps
            if not (wp.dof == 0 and wp.letter in used) and atoms + wp.multiplicity <= max_atoms
        ]
        if not choices:
            break
        wp = choices[int(rng.integers(len(choices)))]
        used.add(wp.letter)
        atoms += wp.multiplicity
        letters.append(wp.letter)
        types.append(int(rng.integers(1, 90)))
    if not letters:  # the smallest orbit alone
        wp = min(wps, key=lambda w: w.multiplicity)
        letters, types = [wp.letter], [1]
    return WyckoffTemplate(space_group, tuple(letters), tuple(types))


def apply_op(rot: torch.Tensor, trans: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
    """``R x + t`` modulo 1 for ``frac [n, 3]``."""
    out = frac @ rot.T + trans
    return out - torch.floor(out)


def match_permutation(images: torch.Tensor, frac: torch.Tensor, tol: float = 1e-8) -> torch.Tensor:
    """Index ``j`` with ``frac[j] == images[i]`` modulo 1, for every ``i`` (asserts a match)."""
    diff = images[:, None, :] - frac[None, :, :]
    dist = (diff - torch.round(diff)).abs().amax(-1)
    best = dist.argmin(1)
    assert float(dist.gather(1, best[:, None]).max()) < tol
    return best
