"""The batched periodic radius graph against pymatgen's ``Structure.get_neighbor_list``."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalflow.crystals.neighbors import periodic_radius_graph


def _edge_set(i, j, offsets, d, cutoff, margin=1e-6):
    """``{(i, j, n1, n2, n3): distance}`` away from the cutoff boundary (ties are not compared)."""
    keep = np.abs(np.asarray(d) - cutoff) > margin
    rows = zip(np.asarray(i)[keep], np.asarray(j)[keep], np.rint(np.asarray(offsets)[keep]).astype(int),
               np.asarray(d)[keep])
    return {(int(a), int(b), *map(int, n)): float(x) for a, b, n, x in rows}


def _compare(structures: list[Structure], cutoffs: list[float]) -> int:
    frac = torch.tensor(np.concatenate([s.frac_coords for s in structures]), dtype=torch.float64)
    lattice = torch.tensor(np.stack([s.lattice.matrix for s in structures]), dtype=torch.float64)
    num_atoms = torch.tensor([len(s) for s in structures])
    batch = torch.repeat_interleave(torch.arange(len(structures)), num_atoms)
    g = periodic_radius_graph(frac, lattice, batch, num_atoms, torch.tensor(cutoffs, dtype=torch.float64))
    first = (torch.cumsum(num_atoms, 0) - num_atoms).tolist()
    total = 0
    for k, (s, r) in enumerate(zip(structures, cutoffs)):
        sel = g.edge_batch == k
        ours = _edge_set(g.dst[sel] - first[k], g.src[sel] - first[k], g.offsets[sel], g.lengths[sel], r)
        centre, point, images, dist = s.get_neighbor_list(r)
        ref = _edge_set(centre, point, images, dist, r)
        assert ours.keys() == ref.keys(), f"crystal {k}: {len(ours)} edges vs pymatgen {len(ref)}"
        for key, d in ref.items():
            assert abs(ours[key] - d) < 1e-9
        # the stored vectors are the Cartesian vectors to the stated image
        v = (frac[g.src[sel]] + g.offsets[sel] - frac[g.dst[sel]]) @ lattice[k]
        torch.testing.assert_close(v, g.vectors[sel], atol=1e-10, rtol=0)
        total += len(ref)
    return total


@pytest.fixture(scope="module")
def mp20_rows(data_dir):
    with gzip.open(data_dir / "mp_20" / "test.csv.gz", "rt") as fh:
        table = pd.read_csv(fh, nrows=24)
    return [Structure.from_str(cif, fmt="cif") for cif in table["cif"]]


def test_matches_pymatgen_on_mp20_rows(mp20_rows):
    """Real MP-20 test rows (raw CIF cells, not Niggli-reduced), several cutoffs, one batch."""
    cutoffs = [3.5 + 0.25 * (k % 8) for k in range(len(mp20_rows))]
    assert _compare(mp20_rows, cutoffs) > 1000


def test_matches_pymatgen_on_skewed_cells_and_unwrapped_coordinates():
    """A strongly sheared cell, a needle and coordinates outside [0, 1) (offsets stay relative
    to the coordinates as given, like pymatgen's)."""
    rng = np.random.default_rng(0)
    skew = Lattice([[3.0, 0, 0], [2.7, 2.0, 0], [1.4, 1.1, 2.5]])
    needle = Lattice([[1.6, 0, 0], [0, 1.7, 0], [0.2, 0.1, 25.0]])
    structures = [
        Structure(skew, ["Na", "Cl", "O"], rng.uniform(-1.5, 2.5, size=(3, 3)), to_unit_cell=False),
        Structure(needle, ["C", "C"], rng.uniform(0, 1, size=(2, 3))),
        Structure(Lattice.cubic(3.1), ["Fe"], [[0.25, 0.5, 0.75]]),
    ]
    assert _compare(structures, [6.0, 7.5, 4.0]) > 50


def test_known_shell_counts_of_a_one_atom_cubic_cell():
    """Known answer: simple cubic a = 2, r = 4.2: shells at 2, 2.83, 3.46, 4 (6 + 12 + 8 + 6 = 32),
    all of them images of the single atom (offsets up to 2 cells away)."""
    s = Structure(Lattice.cubic(2.0), ["Fe"], [[0, 0, 0]])
    g = periodic_radius_graph(torch.zeros(1, 3, dtype=torch.float64),
                              torch.eye(3, dtype=torch.float64)[None] * 2.0, torch.zeros(1, dtype=torch.long),
                              torch.tensor([1]), torch.tensor([4.2], dtype=torch.float64))
    assert g.src.shape[0] == len(s.get_neighbor_list(4.2)[0]) == 32
    assert g.offsets.abs().max() == 2


def test_gradients_flow_to_coordinates_and_lattice():
    frac = torch.tensor([[0.1, 0.2, 0.3], [0.6, 0.4, 0.9]], dtype=torch.float64, requires_grad=True)
    lattice = (torch.eye(3, dtype=torch.float64) * 3.0 + 0.2)[None].requires_grad_(True)
    g = periodic_radius_graph(frac, lattice, torch.zeros(2, dtype=torch.long), torch.tensor([2]),
                              torch.tensor([5.0], dtype=torch.float64))
    g.lengths.sum().backward()
    assert torch.isfinite(frac.grad).all() and torch.isfinite(lattice.grad).all()
    assert lattice.grad.abs().sum() > 0
