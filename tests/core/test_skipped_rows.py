"""Skipped input rows come back as data (``skipped_rows``: which row, and why), on a first parse
and on a cache hit alike, for crystal datasets, user data and template libraries."""

from __future__ import annotations

import json
import random
import re
import warnings

import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalflow.cli import main
from crystalflow.crystals.dataset import CrystalDataset, SkippedRow, cache_file_for, load_user_data
from crystalflow.templates.build import build_library

def good_cif(k: int) -> str:
    """Distinct small crystals (rock salt with a different lattice constant)."""
    s = Structure(Lattice.cubic(5.4 + 0.05 * k), ["Na", "Na", "Na", "Na", "Cl", "Cl", "Cl", "Cl"],
                  [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                   [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]])
    return s.to(fmt="cif")


def nan_cif() -> str:
    return re.sub(r"_cell_length_a\s+\S+", "_cell_length_a   nan", good_cif(0), count=1)


def table(seed: int, n: int = 8) -> tuple[pd.DataFrame, list[str]]:
    """``n`` rows, a random subset of them unreadable (at least one); returns the bad ids in order."""
    rng = random.Random(seed)
    bad = sorted(rng.sample(range(n), rng.randint(1, n - 1)))
    kinds = ["not a cif", "data_x\n_cell_length_a 1\n", nan_cif()]
    ids = [f"m{i}" for i in range(n)]
    cifs = [rng.choice(kinds) if i in bad else good_cif(i) for i in range(n)]
    return pd.DataFrame({"material_id": ids, "cif": cifs}), [ids[i] for i in bad]


@pytest.mark.parametrize("seed", range(4))
def test_csv_skipped_rows_are_exactly_the_bad_rows_also_on_a_cache_hit(seed, tmp_path, cache):
    frame, bad = table(seed)
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warn=False: the rows are data only
        first = CrystalDataset.from_csv(path, progress=False, workers=1, warn=False)
        again = CrystalDataset.from_csv(path, progress=False, workers=1, warn=False)  # cache hit
    assert [r.row for r in first.skipped_rows] == bad and first.skipped == len(bad)
    assert all(isinstance(r, SkippedRow) and r.reason.strip() for r in first.skipped_rows)
    assert set(first.material_ids) == set(frame["material_id"]) - set(bad)
    assert again.skipped_rows == first.skipped_rows and again.skipped == first.skipped
    assert torch.equal(again.frac, first.frac)
    # with warnings (the default), one per skipped row, on the cache hit too
    with pytest.warns(UserWarning) as record:
        CrystalDataset.from_csv(path, progress=False, workers=1)
    expected = [f"skipping row {r.row}: {r.reason}" for r in first.skipped_rows]
    assert [str(w.message) for w in record] == expected


def test_a_cache_without_skipped_rows_is_parsed_again(tmp_path, cache):
    frame, bad = table(0)
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    first = CrystalDataset.from_csv(path, progress=False, workers=1, warn=False)
    entry = cache_file_for(path, "True|1")
    blob = torch.load(entry, weights_only=True)
    del blob["skipped_rows"]  # as written before skipped rows were kept
    torch.save(blob, entry)
    again = CrystalDataset.from_csv(path, progress=False, workers=1, warn=False)
    assert again.skipped_rows == first.skipped_rows and [r.row for r in again.skipped_rows] == bad


def test_user_data_folder_lists_bad_files_by_name(tmp_path, cache):
    folder = tmp_path / "cifs"
    folder.mkdir()
    for k in range(3):
        (folder / f"g{k}.cif").write_text(good_cif(k))
    (folder / "broken.cif").write_text("garbage")
    for _ in range(2):  # parse, then a cache hit
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds = load_user_data(folder, progress=False, warn=False)
        assert [r.row for r in ds.skipped_rows] == ["broken.cif"] and ds.skipped_rows[0].reason
        assert sorted(ds.material_ids) == ["g0", "g1", "g2"]
    subset = ds.subset([0])
    assert subset.skipped_rows == () and subset.skipped == 0


@pytest.mark.parametrize("seed", range(3))
def test_template_build_keeps_skipped_rows_and_warns_nothing(seed, tmp_path, cache):
    frame, bad = table(seed)
    frame = pd.concat([frame, pd.DataFrame({"material_id": ["mnan"], "cif": [nan_cif()]})])
    bad = [*bad, "mnan"]  # a NaN lattice once crashed spglib: it is a skipped row like any other
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    folder = tmp_path / "cifs"
    folder.mkdir()
    (folder / "ok.cif").write_text(good_cif(20))
    (folder / "broken.cif").write_text("data_x\n_cell_length_a 1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lib = build_library([path, folder], tmp_path / "lib.pt", progress=False)
        again = build_library([path], tmp_path / "lib2.pt", progress=False)  # analysis cached
    assert [r.row for r in lib.skipped_rows] == [*bad, "broken"]
    assert all(r.reason.strip() for r in lib.skipped_rows)
    assert [r.row for r in again.skipped_rows] == bad
    assert len(lib) == len(frame) - len(bad) + 1


def test_symmetry_analysis_refuses_a_lattice_that_is_not_finite():
    from crystalflow.errors import InputError
    from crystalflow.symmetry import analyze_structure

    s = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    bad = Structure(Lattice(s.lattice.matrix * float("nan")), s.species, s.frac_coords)
    with pytest.raises(InputError, match="not finite"):
        analyze_structure(bad)


def test_templates_build_cli_names_the_first_skipped_rows_and_counts_the_rest(tmp_path, cache, capsys):
    ids = [f"m{i}" for i in range(10)]
    cifs = [good_cif(0), good_cif(1)] + ["not a cif"] * 8
    path = tmp_path / "rows.csv"
    pd.DataFrame({"material_id": ids, "cif": cifs}).to_csv(path, index=False)
    assert main(["templates", "build", "--data", str(path), "--out", str(tmp_path / "lib.pt")]) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert err[:5] == [line for line in err[:5] if line.startswith("warning: skipping row m")]
    assert [line.split(":")[1].split()[-1] for line in err[:5]] == ids[2:7]
    assert err[5:] == ["warning: 3 more rows skipped (8 in all)"]
    summary = json.loads(captured.out.splitlines()[-1])
    assert summary["skipped"] == 8 and summary["crystals"] == 2
