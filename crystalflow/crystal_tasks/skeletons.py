"""Skeletons of de-novo generation: a space group and the Wyckoff letters of its orbits.

:class:`Skeleton` fixes a crystal's layout (and atom count) without types; :class:`SkeletonDistribution`
is the training set's empirical distribution of skeletons, with how many distinct elements each
skeleton's crystals hold; :func:`element_budget_mask` couples the orbit types of a sample so that it
ends with a drawn number of distinct elements (used by :meth:`crystalflow.crystal_tasks.dng.DNGFlow.sample`).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from crystalflow.errors import InputError
from crystalflow.models.dngnet import MASK_TOKEN
from crystalflow.symmetry import WyckoffTemplate
from crystalflow.symmetry.groups import check_space_group_number
from crystalflow.symmetry.wyckoff import wyckoff_position

__all__ = ["Skeleton", "SkeletonDistribution", "element_budget_mask", "select_skeletons"]


@dataclass(frozen=True, order=True)
class Skeleton:
    """A space group and the sorted Wyckoff letters of its orbits (no types)."""

    space_group: int
    letters: tuple[str, ...]

    @property
    def num_atoms(self) -> int:
        return sum(wyckoff_position(self.space_group, x).multiplicity for x in self.letters)

    @property
    def num_orbits(self) -> int:
        return len(self.letters)

    def template(self, atom_types: Sequence[int] | None = None) -> WyckoffTemplate:
        """A :class:`WyckoffTemplate` with these orbits (placeholder type 1 when not given)."""
        types = tuple(atom_types) if atom_types is not None else (1,) * len(self.letters)
        return WyckoffTemplate(self.space_group, self.letters, types)


@dataclass(frozen=True)
class SkeletonDistribution:
    """Empirical distribution of skeletons in a training set, with how many distinct elements
    each skeleton's crystals hold.

    Attributes:
        skeletons: distinct skeletons; counts: how often each occurs.
        element_counts: per skeleton, how many of its training crystals hold 1, 2, ...,
            ``num_orbits`` distinct elements (``None`` when not recorded, e.g. older checkpoints).
    """

    skeletons: tuple[Skeleton, ...]
    counts: tuple[int, ...]
    element_counts: tuple[tuple[int, ...], ...] | None = None

    @classmethod
    def from_templates(cls, templates: Sequence[WyckoffTemplate]) -> "SkeletonDistribution":
        by_skeleton: dict[Skeleton, list[int]] = collections.defaultdict(list)
        for t in templates:
            by_skeleton[Skeleton(t.space_group, tuple(sorted(t.letters)))].append(len(set(t.atom_types)))
        items = sorted(by_skeleton.items())
        hist = tuple(tuple(ks.count(k) for k in range(1, s.num_orbits + 1)) for s, ks in items)
        return cls(tuple(k for k, _ in items), tuple(len(v) for _, v in items), hist)

    def state_dict(self) -> dict:
        state = {"space_group": [s.space_group for s in self.skeletons],
                 "letters": [",".join(s.letters) for s in self.skeletons], "count": list(self.counts)}
        if self.element_counts is not None:
            state["element_counts"] = [",".join(map(str, h)) for h in self.element_counts]
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> "SkeletonDistribution":
        sk = tuple(Skeleton(int(g), tuple(x.split(","))) for g, x in zip(state["space_group"], state["letters"]))
        hist = state.get("element_counts")
        if hist is not None:
            hist = tuple(tuple(int(c) for c in h.split(",")) for h in hist)
        return cls(sk, tuple(int(c) for c in state["count"]), hist)

    def select(self, space_group: int | None = None, num_atoms: int | None = None,
               min_orbits: int = 1) -> "SkeletonDistribution":
        """Skeletons of a space group / atom count with at least ``min_orbits`` orbits.

        Raises:
            InputError: a bad space group, or no skeleton fits.
        """
        if space_group is not None:
            space_group = check_space_group_number(space_group)
        keep = [i for i, s in enumerate(self.skeletons)
                if (space_group is None or s.space_group == space_group)
                and (num_atoms is None or s.num_atoms == num_atoms) and s.num_orbits >= min_orbits]
        if not keep:
            what = [f"space group {space_group}" if space_group is not None else "any space group"]
            if num_atoms is not None:
                what.append(f"{num_atoms} atoms in the conventional cell")
            if min_orbits > 1:
                what.append(f"at least {min_orbits} Wyckoff orbits (one per element)")
            raise InputError("no Wyckoff template of the training data has " + " and ".join(what))
        hist = None if self.element_counts is None else tuple(self.element_counts[i] for i in keep)
        return SkeletonDistribution(tuple(self.skeletons[i] for i in keep),
                                    tuple(self.counts[i] for i in keep), hist)

    def sample(self, num: int, generator: torch.Generator | None = None) -> list[Skeleton]:
        """``num`` skeletons drawn with probability proportional to their training counts."""
        w = torch.tensor(self.counts, dtype=torch.float64)
        idx = torch.multinomial(w, num, replacement=True, generator=generator)
        return [self.skeletons[i] for i in idx.tolist()]

    def sample_element_counts(self, skeletons: Sequence[Skeleton],
                              generator: torch.Generator | None = None) -> torch.Tensor:
        """``[B]`` long: a number of distinct elements for every skeleton, drawn from how many its
        training crystals hold (1 for a skeleton not in this distribution's histograms).

        Raises:
            ValueError: the distribution records no element counts.
        """
        if self.element_counts is None:
            raise ValueError("this skeleton distribution records no element counts")
        index = {s: i for i, s in enumerate(self.skeletons)}
        width = max(len(h) for h in self.element_counts)
        table = torch.zeros(len(self.skeletons) + 1, width, dtype=torch.float64)
        for i, h in enumerate(self.element_counts):
            table[i, :len(h)] = torch.tensor(h, dtype=torch.float64)
        table[-1, 0] = 1.0  # unknown skeleton: one element
        rows = torch.tensor([index.get(s, len(self.skeletons)) for s in skeletons], dtype=torch.long)
        if rows.numel() == 0:
            return torch.zeros(0, dtype=torch.long)
        return torch.multinomial(table[rows], 1, generator=generator).squeeze(1) + 1


def element_budget_mask(types: torch.Tensor, orbit_batch: torch.Tensor, num_elements: torch.Tensor,
                        num_types: int, mask_token: int = MASK_TOKEN) -> torch.Tensor:
    """Which types each still-masked orbit may take so that its crystal ends with
    ``num_elements`` distinct elements (the coupling of orbit types in :meth:`DNGFlow.sample`).

    A crystal that already holds its number of distinct elements draws only among those; one
    whose masked orbits are exactly as many as the elements it still lacks draws only new ones;
    otherwise any type. Orbits unmasked in the same step are drawn independently, so the count
    is reached exactly in most crystals, not all.

    Args:
        types: ``[M]`` long current orbit tokens (``mask_token`` = not yet drawn).
        orbit_batch: ``[M]`` crystal of every orbit; num_elements: ``[B]`` long targets.

    Returns:
        ``[M, num_types]`` bool.
    """
    b = num_elements.shape[0]
    drawn = types != mask_token
    used = torch.zeros(b, num_types, dtype=torch.bool, device=types.device)
    used[orbit_batch[drawn], types[drawn]] = True
    n_used = used.sum(-1)
    n_masked = torch.zeros(b, dtype=torch.long, device=types.device).index_add_(
        0, orbit_batch, (~drawn).long())
    full = (n_used >= num_elements)[:, None]
    only_new = (n_masked <= num_elements - n_used)[:, None]
    allowed = torch.where(full, used, torch.where(only_new, ~used, torch.ones_like(used)))
    return allowed.index_select(0, orbit_batch)


def select_skeletons(dist, allowed: torch.Tensor, space_group: int | None = None,
                     elements: tuple[int, ...] | None = None, num_atoms: int | None = None):
    """Training skeletons compatible with a request (see the module docstring).

    Args:
        dist: the checkpoint's :class:`~crystalflow.crystal_tasks.dng.SkeletonDistribution`.
        allowed: ``[V]`` bool, types the model can generate.

    Raises:
        InputError: element never seen in training, or no compatible skeleton.
    """
    from pymatgen.core import Element

    if num_atoms is not None and (int(num_atoms) != num_atoms or num_atoms < 1):
        raise InputError(f"num_atoms must be a positive integer, got {num_atoms!r}", parameters=("num_atoms",))
    if elements is not None:
        missing = [z for z in elements if z >= allowed.shape[0] or not bool(allowed[z])]
        if missing:
            names = ", ".join(Element.from_Z(z).symbol for z in missing)
            raise InputError(f"element(s) {names} never occur in the model's training data")
    return dist.select(space_group, num_atoms, min_orbits=len(elements) if elements else 1)
