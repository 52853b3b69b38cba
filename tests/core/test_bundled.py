"""The checkpoints shipped in the package load strictly and predict out of the box."""

from __future__ import annotations

import pytest
from pymatgen.core import Composition, Structure

from crystalflow.checkpoint import load_checkpoint
from crystalflow.cli import main
from crystalflow.pretrained import BUNDLED_DIR, load_pretrained


@pytest.mark.parametrize("name,dataset", [("csp_perov_5.pt", "perov_5"), ("csp_mp_20.pt", "mp_20")])
def test_bundled_checkpoints_load_strictly(name, dataset):
    ck = load_checkpoint(BUNDLED_DIR / name)
    assert ck.task == "csp" and ck.stats["dataset"] == dataset and ck.train_state is None
    flow, _ = load_pretrained(name)
    assert sum(p.numel() for p in flow.model.parameters()) > 100_000


def test_default_predict_writes_two_srtio3_cifs(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["predict", "--composition", "SrTiO3", "--num-samples", "2", "--out", str(out)]) == 0
    files = sorted(out.glob("*.cif"))
    assert len(files) == 2
    for f in files:
        s = Structure.from_file(f)
        assert s.composition == Composition("SrTiO3")
        assert 5 < s.volume / len(s) < 40  # a physical volume per atom, not a collapsed cell


def test_python_api_predict_returns_structures():
    import crystalflow

    structures = crystalflow.predict("NaCl", formula_units=2, num_samples=3, seed=1)
    assert len(structures) == 3
    assert all(isinstance(s, Structure) and s.composition == Composition("Na2Cl2") for s in structures)
    again = crystalflow.predict("NaCl", formula_units=2, num_samples=3, seed=1)
    assert [s.frac_coords.tolist() for s in again] == [s.frac_coords.tolist() for s in structures]
