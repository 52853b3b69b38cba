"""Structure <-> tensors round trips, batching, lattice conversions, dataset reading."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from crystalflow.crystals import (
    Crystal, CrystalDataset, collate, lattice_matrix_to_params, lattice_params_to_matrix, load_split,
)
from crystalflow.errors import DataError, InputError


def perovskite() -> Structure:
    return Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def triclinic() -> Structure:
    lat = Lattice.from_parameters(4.1, 5.3, 6.7, 71.0, 98.0, 113.0)
    return Structure(lat, ["Li", "Fe", "P", "O"], [[0.1, 0.2, 0.3], [0.6, 0.1, 0.8], [0.3, 0.7, 0.4], [0.9, 0.45, 0.05]])


@pytest.mark.parametrize("make", [perovskite, triclinic])
def test_structure_round_trip(make):
    s = make()
    c = Crystal.from_structure(s)
    back = c.to_structure()
    assert StructureMatcher().fit(s, back)
    assert back.composition == s.composition
    assert np.allclose(back.lattice.parameters, c.lattice.numpy())
    again = Crystal.from_structure(back)
    assert torch.allclose(again.lattice, c.lattice, atol=1e-8)


def test_rotated_and_reexpressed_cells_give_the_same_crystal():
    s = triclinic()
    rot = Structure(Lattice(s.lattice.matrix @ np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]),
                    s.species, s.frac_coords)
    supercell_basis = s.copy()
    supercell_basis.make_supercell([[1, 1, 0], [0, 1, 0], [0, 0, 1]])  # same lattice, another basis
    ref = Crystal.from_structure(s)
    for other in (rot, supercell_basis):
        c = Crystal.from_structure(other)
        assert torch.allclose(c.lattice, ref.lattice, atol=1e-6)
        assert StructureMatcher().fit(c.to_structure(), s)


def test_cif_file_round_trip(tmp_path):
    c = Crystal.from_structure(triclinic(), material_id="x")
    path = tmp_path / "x.cif"
    c.to(filename=path)
    back = Crystal.from_file(path)
    assert torch.allclose(back.lattice, c.lattice, atol=1e-5)
    assert StructureMatcher().fit(back.to_structure(), c.to_structure())
    assert back.material_id == "x"


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(InputError, match="malformed CIF"):
        Crystal.from_cif_string("data_x\n_cell_length_a 3\nloop_\n nonsense")
    with pytest.raises(InputError, match="no such file"):
        Crystal.from_file(tmp_path / "missing.cif")
    with pytest.raises(DataError):
        load_split("mp_20", "train", tmp_path / "nowhere")
    with pytest.raises(InputError):
        load_split("mp_99", "train", tmp_path)


def test_lattice_params_matrix_agree_with_pymatgen():
    g = np.random.default_rng(0)
    for _ in range(20):
        p = np.concatenate([g.uniform(2, 10, 3), g.uniform(65, 115, 3)])
        mine = lattice_params_to_matrix(torch.tensor(p)).numpy()
        assert np.allclose(mine, Lattice.from_parameters(*p).matrix, atol=1e-9)
        assert np.allclose(lattice_matrix_to_params(torch.tensor(mine)).numpy(), p, atol=1e-9)


def test_collate_and_split_round_trip():
    crystals = [Crystal.from_structure(perovskite(), material_id="a"), Crystal.from_structure(triclinic(), material_id="b")]
    b = collate(crystals, dtype=torch.float64)
    assert b.frac.shape == (9, 3) and b.lattice.shape == (2, 6)
    assert b.batch.tolist() == [0] * 5 + [1] * 4 and b.num_atoms.tolist() == [5, 4]
    for c, d in zip(crystals, b.to_crystals()):
        assert torch.allclose(c.frac, d.frac) and torch.equal(c.atom_types, d.atom_types)
        assert c.material_id == d.material_id


def test_csv_reader_skips_bad_rows_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALFLOW_CACHE", str(tmp_path / "cache"))
    good = perovskite().to(fmt="cif")
    path = tmp_path / "mini.csv.gz"
    import pandas as pd
    frame = pd.DataFrame({"material_id": ["a", "bad", "c"], "cif": [good, "not a cif", triclinic().to(fmt="cif")]})
    with gzip.open(path, "wt") as fh:
        frame.to_csv(fh, index=False)
    with pytest.warns(UserWarning, match="skipping row bad"):
        ds = CrystalDataset.from_csv(path, progress=False)
    assert len(ds) == 2 and ds.skipped == 1 and ds.material_ids == ("a", "c")
    cached = CrystalDataset.from_csv(path, progress=False)
    assert torch.equal(cached.frac, ds.frac) and cached.skipped == 1
    assert list((tmp_path / "cache").glob("*.pt"))


def test_real_split_rows_round_trip(data_dir):
    ds = load_split("perov_5", "val", data_dir, progress=False)
    assert len(ds) == 400
    s = ds[0].to_structure()
    assert len(s) == 5 and ds[0].frac.min() >= 0 and ds[0].frac.max() < 1
