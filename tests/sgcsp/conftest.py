"""Fixtures of the space-group conditioned flow tests: a few templates, a tiny dataset and model.

No benchmark data needed: crystals are built from Wyckoff templates (random representatives on
their subspaces, lattices projected onto the family), so the tests run anywhere, on one thread.
"""

from __future__ import annotations

import pytest
import torch

from crystalflow.crystals.symmetric import SymmetricDataset
from crystalflow.models import SGNet, SGNetConfig
from crystalflow.crystal_tasks.sgcsp import SGCSPConfig, SGCSPFlow
from crystalflow.symmetry import (
    WyckoffTemplate,
    crystal_symmetry,
    expand_orbits,
    collate_symmetry,
    family_lattice_chart,
    project_lattice,
    wyckoff_points,
)

#: one template per crystal family, with free and fixed positions, incl. W with a coefficient 2
TEMPLATES = [
    WyckoffTemplate(1, ("a", "a"), (8, 14)),  # triclinic
    WyckoffTemplate(14, ("e", "a"), (8, 26)),  # monoclinic (beta free), 4e general + 2a fixed
    WyckoffTemplate(62, ("c", "c", "d"), (20, 6, 8)),  # orthorhombic Pnma
    WyckoffTemplate(139, ("a", "e"), (56, 29)),  # tetragonal I4/mmm, (0, 0, z)
    WyckoffTemplate(194, ("h", "c"), (30, 8)),  # hexagonal, 6h = (x, 2x, 1/4)
    WyckoffTemplate(166, ("c", "a"), (83, 52)),  # trigonal R-3m in hexagonal axes
    WyckoffTemplate(225, ("a", "b"), (11, 17)),  # cubic rock salt, no free coordinate
    WyckoffTemplate(221, ("a", "b", "c"), (38, 22, 8)),  # perovskite-like, 3c
]

LATTICES = {1: [5.1, 5.7, 6.3, 81.0, 95.0, 104.0], 14: [5.2, 6.1, 7.3, 90, 128.0, 90],
            62: [5.5, 3.9, 7.7, 90, 90, 90], 139: [3.9, 3.9, 12.5, 90, 90, 90],
            194: [3.3, 3.3, 5.4, 90, 90, 120], 166: [4.4, 4.4, 29.0, 90, 90, 120],
            225: [5.6, 5.6, 5.6, 90, 90, 90], 221: [3.9, 3.9, 3.9, 90, 90, 90]}


def make_dataset(templates=TEMPLATES, seed: int = 0) -> SymmetricDataset:
    """Symmetric crystals of ``templates`` with random representatives."""
    g = torch.Generator().manual_seed(seed)
    layouts = [crystal_symmetry(t) for t in templates]
    sym = collate_symmetry(layouts)
    u = torch.rand(sym.orbit_size.shape[0], 3, generator=g, dtype=torch.float64)
    frac = expand_orbits(wyckoff_points(u, sym), sym)
    lat = torch.tensor([LATTICES[t.space_group] for t in templates], dtype=torch.float64)
    lat = project_lattice(lat, sym.space_group)
    return SymmetricDataset(
        frac=frac, lattice=lat, atom_types=torch.cat([lay.atom_types for lay in layouts]),
        num_atoms=sym.num_atoms.clone(), templates=tuple(templates),
        material_ids=tuple(f"x{i}" for i in range(len(templates))),
    )


def make_flow(seed: int = 0, hidden: int = 16, layers: int = 1, dataset=None) -> SGCSPFlow:
    torch.manual_seed(seed)
    ds = dataset or make_dataset()
    chart = family_lattice_chart(ds.lattice, ds.space_groups)
    model = SGNet(SGNetConfig(hidden=hidden, layers=layers, time_dim=16, sg_dim=8, wyckoff_dim=8))
    return SGCSPFlow(model.double().eval(), chart, SGCSPConfig(steps=4))


@pytest.fixture(autouse=True, scope="session")
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="session")
def dataset() -> SymmetricDataset:
    return make_dataset()


@pytest.fixture(scope="session")
def flow(dataset) -> SGCSPFlow:
    return make_flow(dataset=dataset)
