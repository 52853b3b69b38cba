"""``evaluate stability`` / ``evaluate dng``: their CSV and plot folders are checked before any
work (a used place needs --overwrite, an unusable one is an error), and written atomically."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

import crystalflow.metrics.hull as hull_module
import crystalflow.metrics.reference as reference_module
from crystalflow.cli import main
from crystalflow.outputs import MANIFEST


@pytest.fixture
def samples(tmp_path):
    d = tmp_path / "samples"
    d.mkdir()
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    (d / "a.cif").write_text(nacl.to(fmt="cif"))
    return d


@pytest.fixture
def no_work(monkeypatch):
    """Loading the hull or the reference profile is the first piece of work: it must not start."""
    monkeypatch.setattr(hull_module, "load_reference_hull", lambda *a, **k: pytest.fail("worked"))
    monkeypatch.setattr(reference_module, "reference_profile", lambda *a, **k: pytest.fail("worked"))


def _refused(capsys, argv, needle):
    capsys.readouterr()  # what earlier commands printed
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and err.count("\n") == 1 and needle in err, err


def test_stability_refuses_unusable_outputs_before_work(samples, tmp_path, capsys, no_work):
    base = ["evaluate", "stability", "--samples", str(samples), "--no-progress"]
    (samples / "stability.csv").write_text("old")
    _refused(capsys, base, "--overwrite")  # the default CSV of a previous run
    (tmp_path / "file").write_text("x")
    _refused(capsys, base + ["--out", str(tmp_path / "file" / "s.csv")], "under the file")
    _refused(capsys, base + ["--out", str(tmp_path)], "is a folder")
    _refused(capsys, base + ["--out", str(tmp_path / "s.csv"), "--plots", str(samples)],
             "samples folder")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x.png").write_text("x")
    _refused(capsys, base + ["--out", str(tmp_path / "s.csv"), "--plots", str(tmp_path / "used")],
             "--overwrite")
    missing = tmp_path / "missing"
    _refused(capsys, ["evaluate", "stability", "--samples", str(missing)], "does not exist")
    assert not missing.exists()
    assert (samples / "stability.csv").read_text() == "old" and not (tmp_path / "s.csv").exists()


def test_dng_refuses_a_used_plots_folder_before_work(samples, tmp_path, capsys, no_work):
    used = tmp_path / "plots"
    used.mkdir()
    (used / "density.png").write_text("x")
    base = ["evaluate", "dng", "--samples", str(samples), "--reference", str(tmp_path / "r.csv")]
    _refused(capsys, base + ["--plots", str(used)], "--overwrite")
    _refused(capsys, base + ["--plots", str(samples)], "samples folder")
    assert [p.name for p in used.iterdir()] == ["density.png"]


def test_stability_overwrite_replaces_the_previous_csv_and_plots(samples, tmp_path, capsys):
    from crystalflow.metrics.hull import HullEntry, write_hull_entries

    hull = tmp_path / "hull.csv.gz"
    write_hull_entries(hull, [HullEntry("na", "Na2", -1.3), HullEntry("cl", "Cl2", -1.8)])
    (samples / MANIFEST).write_text("a.cif\n")  # a crystalflow output folder
    argv = ["evaluate", "stability", "--samples", str(samples), "--hull", str(hull),
            "--relax-steps", "0", "--plots", str(tmp_path / "plots"), "--json", "--no-progress"]
    assert main(argv) == 0
    first = (samples / "stability.csv").read_text()
    assert first.count("\n") == 2 and (tmp_path / "plots" / "ehull.png").stat().st_size > 0
    assert "stability.csv" in (samples / MANIFEST).read_text().split()  # cleared with the samples
    capsys.readouterr()
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    assert (samples / "stability.csv").read_text() == first
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [MANIFEST, "ehull.png"]
    assert sorted(p.name for p in samples.iterdir()) == [MANIFEST, "a.cif", "stability.csv"]
