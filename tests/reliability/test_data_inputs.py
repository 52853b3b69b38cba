"""Questionable inputs: refused in one line or skipped with a warning, never accepted silently."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from crystalflow.cli import main
from crystalflow.crystal_tasks.composition import atom_types_for, check_trained_elements, parse_composition
from crystalflow.crystals.dataset import CrystalDataset, cache_file_for
from crystalflow.errors import DataError, InputError
from crystalflow.metrics.stability import StabilityRecord, stability_metrics
from tests.proteins.conftest import protein_dir, real_files  # noqa: F401 (fixtures)


@pytest.mark.parametrize("formula,needle", [("Na0Cl", "amount 0"), ("NaCl0.0", "amount 0"),
                                            ("Na(Cl)0", "amount 0"), ("D2O", "isotopes"),
                                            ("T2O", "isotopes")])
def test_formulas_pymatgen_would_change_are_refused(formula, needle):
    with pytest.raises(InputError, match=needle) as exc:
        parse_composition(formula)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("formula", ["NaCl", "Na10Cl10", "Ta2O5", "Tb", "Ti0.5O1.0"])
def test_ordinary_formulas_still_parse(formula):
    if formula == "Ti0.5O1.0":
        with pytest.raises(InputError, match="fractional"):
            atom_types_for(formula)
    else:
        assert atom_types_for(formula)


def test_elements_never_seen_in_training_are_refused_unless_allowed():
    stats = {"elements": [11, 17]}
    check_trained_elements([11, 17, 17], stats)
    with pytest.raises(InputError, match="Fm.*--allow-unseen-elements"):
        check_trained_elements([100, 17], stats)
    check_trained_elements([100, 17], stats, allow_unseen=True)
    check_trained_elements([100], {"dataset": "old checkpoint"})  # not recorded: not checked
    with pytest.raises(InputError, match="Ar"):
        check_trained_elements([18], {"allowed_types": [11, 17]})  # a DNG checkpoint's record


NACL = """data_NaCl
_symmetry_space_group_name_H-M 'P 1'
_cell_length_a {a}
_cell_length_b 5.6
_cell_length_c 5.6
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
loop_
_atom_site_type_symbol
_atom_site_label
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Na Na1 0 0 0
Cl Cl1 0.5 0.5 0.5
"""


def test_nan_lattice_rows_are_skipped_with_a_warning(tmp_path, cache):
    path = tmp_path / "rows.csv"
    pd.DataFrame({"material_id": ["good", "nan", "inf"],
                  "cif": [NACL.format(a=5.6), NACL.format(a="nan"), NACL.format(a="inf")]}).to_csv(path)
    with pytest.warns(UserWarning, match="skipping row nan"):
        ds = CrystalDataset.from_csv(path, progress=False, workers=1)
    assert ds.material_ids == ("good",) and ds.skipped == 2
    assert all(math.isfinite(x) for x in ds.lattice.flatten().tolist())


def test_all_garbage_csv_exits_2_in_one_line(tmp_path, cache, capsys):
    path = tmp_path / "garbage.csv"
    pd.DataFrame({"material_id": ["a", "b"], "cif": ["not a cif", NACL.format(a="nan")]}).to_csv(path)
    out = tmp_path / "run"
    rc = main(["train", "--data", str(path), "--out", str(out), "--no-progress"])
    lines = capsys.readouterr().err.splitlines()
    assert rc == 2 and not out.exists()
    assert lines[-1].startswith("error:") and all(x.startswith("warning: skipping") for x in lines[:-1])


def test_corrupted_cache_is_rebuilt_with_a_warning_naming_it(tmp_path, cache):
    path = tmp_path / "rows.csv"
    pd.DataFrame({"material_id": ["x"], "cif": [NACL.format(a=5.6)]}).to_csv(path)
    first = CrystalDataset.from_csv(path, progress=False, workers=1)
    entry = cache_file_for(path, "True|1")
    assert entry.is_file()
    entry.write_bytes(b"\x00garbage")
    with pytest.warns(UserWarning, match=str(entry).replace(".", r"\.")):
        again = CrystalDataset.from_csv(path, progress=False, workers=1)
    assert again.material_ids == first.material_ids
    CrystalDataset.from_csv(path, progress=False, workers=1)  # rebuilt: read without a warning


def test_on_the_hull_counts_as_stable():
    nan = float("nan")
    records = [StabilityRecord(f"s{i}", "NaCl", 2, -3.6, -3.6, e, "", 0, True)
               for i, e in enumerate([4e-7, 1e-6, -0.01, 4e-6, 0.2, nan])]
    m = stability_metrics(records)
    assert m.frac_stable == pytest.approx(3 / 6) and m.frac_metastable == pytest.approx(4 / 6)


def test_one_bad_reference_row_does_not_abort_evaluate_csp(tmp_path, capsys):
    ref = tmp_path / "ref.csv"
    pd.DataFrame({"material_id": ["a", "bad", "c"],
                  "cif": [NACL.format(a=5.6), "garbage", NACL.format(a=5.7)]}).to_csv(ref, index=False)
    preds = tmp_path / "preds"
    preds.mkdir()
    for i, a in (("a", 5.6), ("bad", 5.6), ("c", 5.7)):
        (preds / f"{i}.cif").write_text(NACL.format(a=a))
    rc = main(["evaluate", "csp", "--predictions", str(preds), "--reference", str(ref), "--json",
               "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0 and "reference bad" in captured.err
    assert json.loads(captured.out)["match_rate"] == pytest.approx(1.0)


def test_one_bad_pdb_does_not_abort_protein_evaluate(real_files, tmp_path, capsys):
    d = tmp_path / "pdbs"
    d.mkdir()
    (d / real_files[0].name).symlink_to(real_files[0])
    (d / "broken.pdb").write_text("this is not a PDB file\n")
    rc = main(["protein", "evaluate", str(d)])
    captured = capsys.readouterr()
    assert rc == 0 and "CA-CA" in captured.out and captured.err.startswith("warning: skipping")
    assert "broken.pdb" in captured.err and captured.err.count("\n") == 1
    (d / real_files[0].name).unlink()
    rc = main(["protein", "evaluate", str(d)])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and err[-1].startswith("error:") and "broken.pdb" in err[-1]


def test_cli_warnings_are_one_line_on_stderr(tmp_path):
    import subprocess
    import sys

    d = tmp_path / "pdbs"
    d.mkdir()
    (d / "broken.pdb").write_text("this is not a PDB file\n")
    res = subprocess.run([sys.executable, "-m", "crystalflow", "protein", "evaluate", str(d)],
                         capture_output=True, text=True, timeout=120)
    lines = res.stderr.splitlines()
    assert res.returncode == 2 and res.stdout == "" and "Traceback" not in res.stderr
    assert lines[0].startswith("warning: skipping") and lines[-1].startswith("error:") and len(lines) == 2


def test_protein_generate_refuses_a_used_folder_before_sampling(tmp_path, capsys):
    out = tmp_path / "bb"
    out.mkdir()
    (out / "sample_40_0.pdb").write_text("old")
    rc = main(["protein", "generate", "--length", "40", "--num", "1", "--out", str(out)])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["sample_40_0.pdb"]
