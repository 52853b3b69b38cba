"""``predict --p1`` and ``--use-space-group``: every written file is checked and listed in
summary.csv (like the default pipeline), ids stay inside --out, bad input writes nothing."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest
from pymatgen.core import Structure

from crystalflow.checks import check_structure
from crystalflow.cli import main
from crystalflow.outputs import CHECKED_COLUMNS, MANIFEST

ROCKSALT = Structure.from_spacegroup("Fm-3m", [[5.64, 0, 0], [0, 5.64, 0], [0, 0, 5.64]],
                                     ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
#: ids a CSV may hold: traversal attempts, an absolute path, a duplicate
IDS = ["../../escape", "/tmp/abs", "mp-1", "mp-1"]


@pytest.fixture
def rows_csv(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALFLOW_CACHE", str(tmp_path / "cache"))
    cif = ROCKSALT.get_primitive_structure().to(fmt="cif")
    path = tmp_path / "rows.csv"
    pd.DataFrame({"material_id": IDS + ["bad"], "cif": [cif] * len(IDS) + ["not a cif"]}).to_csv(
        path, index=False)
    return path


def _summary(out):
    with open(out / "summary.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _assert_checked_folder(out, tmp_path, requested):
    """Every CIF in ``out`` (and nothing outside it) is a summary row whose flags are its check."""
    rows = _summary(out)
    cifs = sorted(p.name for p in out.glob("*.cif"))
    assert sorted(r["file"] for r in rows) == cifs and len(set(cifs)) == len(cifs)
    assert list(rows[0]) == list(CHECKED_COLUMNS)
    assert set((out / MANIFEST).read_text().split()) == set(cifs) | {"summary.csv"}
    assert not list(tmp_path.rglob("escape*")) and not list(tmp_path.parent.glob("abs*"))
    for r in rows:
        check = check_structure(Structure.from_file(out / r["file"]), requested)
        assert r["ok"] == str(check.ok) and r["space_group"] == str(check.space_group)
        assert r["problem"] == check.problem
    return rows


def test_p1_csv_writes_checked_files_and_summary(rows_csv, tmp_path, capsys):
    out = tmp_path / "p1"
    rc = main(["predict", "--from-csv", str(rows_csv), "--p1", "--steps", "2", "--num-samples", "2",
               "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0
    assert json.loads(captured.out.splitlines()[-1])["written"] == 2 * len(IDS)
    rows = _assert_checked_folder(out, tmp_path, None)
    assert [r["rank"] for r in rows[:2]] == ["0", "1"]  # by id, then sample
    failed = sum(r["ok"] != "True" for r in rows)
    assert (f"{failed} of {len(rows)} structures failed" in captured.err) == bool(failed)


def test_use_space_group_csv_checks_each_row_against_its_own_group(rows_csv, tmp_path, capsys):
    out = tmp_path / "sg"
    rc = main(["predict", "--from-csv", str(rows_csv), "--use-space-group", "--steps", "2",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    rows = _assert_checked_folder(out, tmp_path, 225)
    assert {r["requested_space_group"] for r in rows} == {"225"}
    assert [r["file"] for r in rows] == ["______escape.cif", "_tmp_abs.cif", "mp-1.cif", "mp-1__2.cif"]


@pytest.mark.parametrize("mode", [["--p1"], ["--use-space-group"]])
def test_all_garbage_csv_writes_nothing(tmp_path, capsys, monkeypatch, mode):
    monkeypatch.setenv("CRYSTALFLOW_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "garbage.csv"
    pd.DataFrame({"material_id": ["a", "b"], "cif": ["not a cif", "nor this"]}).to_csv(path, index=False)
    out = tmp_path / "never"
    rc = main(["predict", "--from-csv", str(path), *mode, "--steps", "2", "--out", str(out)])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and err[-1].startswith("error:") and not out.exists()


def test_composition_flow_paths_refuse_a_used_folder_before_sampling(tmp_path, capsys, monkeypatch):
    import crystalflow.crystal_tasks.prediction as prediction

    monkeypatch.setattr(prediction, "predict_with_space_group", lambda *a, **k: pytest.fail("sampled"))
    out = tmp_path / "used"
    out.mkdir()
    (out / "old.cif").write_text("x")
    for extra in (["--space-group", "225"], ["--p1"]):
        rc = main(["predict", "--composition", "NaCl", *extra, "--out", str(out)])
        assert rc == 2 and "--overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["old.cif"]
    rc = main(["predict", "--composition", "NaCl", "--space-group", "225", "--wyckoff", "4z",
               "--out", str(tmp_path / "never")])
    assert rc == 2 and not (tmp_path / "never").exists()


def test_space_group_request_writes_one_checked_file_per_sample(tmp_path, capsys):
    out = tmp_path / "nacl"
    rc = main(["predict", "--composition", "NaCl", "--space-group", "225", "--wyckoff",
               "Na:4a,Cl:4b", "--steps", "3", "--out", str(out)])
    assert rc == 0
    rows = _assert_checked_folder(out, tmp_path, 225)
    assert [r["file"] for r in rows] == ["NaCl.cif"] and rows[0]["requested_space_group"] == "225"


@pytest.mark.parametrize("mode", [[], ["--p1"], ["--space-group", "225"]])
def test_unwritable_out_is_refused_before_any_sampling(tmp_path, capsys, monkeypatch, mode):
    import crystalflow.crystal_tasks.pipeline as pipeline
    import crystalflow.crystal_tasks.prediction as prediction

    for module, name in ((pipeline, "predict_compositions"), (prediction, "sample_structures"),
                         (prediction, "sample_symmetric_structures")):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("sampled"))
    (tmp_path / "file").write_text("x")
    rc = main(["predict", "--composition", "NaCl", *mode, "--out", str(tmp_path / "file" / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "under the file" in err and err.count("\n") == 1


@pytest.mark.parametrize("formula,mode", [("FmCl3", ["--p1"]), ("ArCl", ["--space-group", "225"])])
def test_elements_the_checkpoint_never_saw_are_refused_unless_allowed(tmp_path, capsys, formula, mode):
    """The bundled checkpoints record no element list; their benchmark's bundled library stands in."""
    out = tmp_path / "never"
    rc = main(["predict", "--composition", formula, *mode, "--steps", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "--allow-unseen-elements" in err and err.count("\n") == 1 and not out.exists()
    rc = main(["predict", "--composition", formula, *mode, "--steps", "2", "--out", str(out),
               "--allow-unseen-elements"])
    assert rc == 0 and len(_summary(out)) == 1
