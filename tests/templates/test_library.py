"""Template library: round trips, rebuilt crystals, benchmark hygiene of the bundled library."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher

from crystalflow.crystals.dataset import read_cif_table
from crystalflow.symmetry import build_symmetrized
from crystalflow.templates import (
    BUNDLED_LIBRARY,
    SELECTION_ROWS,
    TemplateLibrary,
    anonymous_key,
    centering,
    load_library,
)
from crystalflow.templates.build import build_library, excluded_ids


@pytest.fixture(scope="module")
def small_csv(data_dir, tmp_path_factory):
    """The first 40 rows of MP-20 val as a CSV of their own."""
    table = read_cif_table(data_dir / "mp_20" / "val.csv.gz").iloc[:40]
    path = tmp_path_factory.mktemp("lib") / "small.csv"
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def small_library(small_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("lib") / "small.pt"
    return build_library([small_csv], out, progress=False), out, small_csv


def test_centering_counts_lattice_points():
    assert centering(221) == 1 and centering(225) == 4 and centering(229) == 2
    assert centering(166) == 3 and centering(63) == 2 and centering(12) == 2


def test_anonymous_key_is_the_sorted_reduced_formula():
    assert anonymous_key({38: 1, 22: 1, 8: 3}) == ((1, 1, 3), 1)
    assert anonymous_key({11: 4, 17: 4}) == ((1, 1), 4)
    assert anonymous_key({3: 4, 26: 4, 15: 4, 8: 16}) == ((1, 1, 1, 4), 4)


def test_save_load_round_trip(small_library, tmp_path):
    lib, path, _ = small_library
    again = TemplateLibrary.load(path)
    assert again.material_ids == lib.material_ids and again.letters == lib.letters
    for name in ("space_group", "num_orbits", "orbit_types", "lattice", "representatives",
                 "element_volumes"):
        assert torch.equal(getattr(again, name), getattr(lib, name)), name
    assert again.templates == lib.templates


def test_entries_rebuild_the_source_crystals(small_library):
    """Every entry's orbits expand back to its source crystal (StructureMatcher, tight)."""
    lib, _, csv = small_library
    from crystalflow.crystals.crystal import structure_from_cif

    table = pd.read_csv(csv)
    refs = {m: structure_from_cif(c) for m, c in zip(table["material_id"], table["cif"])}
    matcher = StructureMatcher(stol=0.05, ltol=0.02, angle_tol=1)
    for i in range(len(lib)):
        e = lib.entry(i)
        s = build_symmetrized(e.template, e.lattice, e.representatives).to_structure()
        assert s.composition.reduced_formula == refs[e.material_id].composition.reduced_formula
        assert matcher.fit(s, refs[e.material_id]), e.material_id
        prim = s.get_primitive_structure()
        assert {el.Z: int(n) for el, n in prim.composition.items()} == e.primitive_counts


def test_element_volumes_predict_cell_volumes(small_library):
    """The non-negative fit is a fit: median relative error of the volume per atom < 25 %."""
    lib, _, _ = small_library
    from pymatgen.core import Lattice

    errs = []
    for i in range(len(lib)):
        t = lib.template(i)
        v = Lattice.from_parameters(*lib.lattice[i].double().tolist()).volume / t.num_atoms
        errs.append(abs(lib.volume_per_atom(t.composition) - v) / v)
    assert np.median(errs) < 0.25
    assert (lib.element_volumes >= 0).all()


def test_exclusion_leaves_the_named_rows_out(small_csv, tmp_path):
    lib = build_library([small_csv], tmp_path / "l.pt", exclude=[f"{small_csv}:10"], progress=False)
    first = set(pd.read_csv(small_csv)["material_id"].iloc[:10])
    assert not first & set(lib.material_ids)
    assert len(lib) == 30
    assert excluded_ids(f"{small_csv}:10") == first


def test_bundled_library_holds_no_benchmark_crystal(data_dir):
    """No MP-20 test crystal and no crystal of the validation selection slice is in the bundled
    library (material ids are unique per Materials Project crystal)."""
    lib = load_library(BUNDLED_LIBRARY)
    ids = set(lib.material_ids)
    test_ids = set(read_cif_table(data_dir / "mp_20" / "test.csv.gz")["material_id"])
    selection = set(read_cif_table(data_dir / "mp_20" / "val.csv.gz")["material_id"].iloc[:SELECTION_ROWS])
    assert not ids & test_ids
    assert not ids & selection
    train = set(read_cif_table(data_dir / "mp_20" / "train.csv.gz")["material_id"])
    assert train <= ids | set()  # every train crystal analysed is in it
    assert len(ids) == len(lib)


def test_bad_library_file_is_a_clean_error(tmp_path):
    from crystalflow.errors import InputError

    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a library")
    with pytest.raises(InputError, match="not a template library"):
        TemplateLibrary.load(bad)
    with pytest.raises(InputError, match="no template library"):
        TemplateLibrary.load(tmp_path / "missing.pt")


def test_library_from_a_cif_folder_equals_the_csv_one(small_csv, small_library, tmp_path):
    """A folder of the same crystals as CIF files (ids = file stems) gives the same library, and
    an unreadable file is skipped: listed in ``skipped_rows`` with its reason, not warned."""
    lib_csv, _, _ = small_library
    table = pd.read_csv(small_csv)
    folder = tmp_path / "cifs"
    folder.mkdir()
    for mid, cif in zip(table["material_id"].iloc[:10], table["cif"].iloc[:10]):
        (folder / f"{mid}.cif").write_text(cif)
    (folder / "broken.cif").write_text("data_x\n_cell_length_a 1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lib = build_library([folder], tmp_path / "f.pt", progress=False)
    assert [r.row for r in lib.skipped_rows] == ["broken"] and lib.skipped_rows[0].reason
    assert sorted(lib.material_ids) == sorted(table["material_id"].iloc[:10])
    for i, mid in enumerate(lib.material_ids):
        j = lib_csv.material_ids.index(mid)
        assert lib.template(i) == lib_csv.template(j)
        assert torch.allclose(lib.lattice[i], lib_csv.lattice[j])
