"""DNG aggregation and ``crystalflow evaluate dng`` on tiny sets."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from crystalflow.cli import main
from crystalflow.errors import DataError, InputError
from crystalflow.metrics.dng import dataset_from_path, dng_metrics
from crystalflow.metrics.io import load_sample_dir
from crystalflow.metrics.reference import profile_structures, reference_profile

from .conftest import bcc_fe, cscl_nacl, perovskite_srtio3, rocksalt_nacl, zincblende_gaas

KEYS = {"struct_valid", "comp_valid", "cov_recall", "cov_precision", "wdist_density", "wdist_num_elems", "d_sg"}


def prim_set():
    return [s.get_primitive_structure() for s in
            (rocksalt_nacl(), cscl_nacl(), zincblende_gaas(), bcc_fe(), perovskite_srtio3())]


def _write_csv(path, structures):
    rows = [{"material_id": f"x-{i}", "cif": s.to(fmt="cif")} for i, s in enumerate(structures)]
    pd.DataFrame(rows).to_csv(path, index=False)


def test_identical_sets(cache):
    structures = prim_set()
    ref = profile_structures(structures, with_fingerprints=True, progress=False)
    m = dng_metrics(structures, ref, progress=False)
    assert m.struct_valid == 1.0 and m.comp_valid == 1.0
    assert m.wdist_density == pytest.approx(0.0, abs=1e-12)
    assert m.wdist_num_elems == pytest.approx(0.0, abs=1e-12)
    assert m.d_sg == pytest.approx(0.0, abs=1e-12)
    assert m.cov_recall == 1.0 and m.cov_precision == 1.0
    assert m.unique_rate == 1.0 and m.novel_rate is None
    assert KEYS <= set(m.to_dict())


def test_unreadable_files_count_as_invalid():
    structures = prim_set()[:2]
    ref = profile_structures(structures, progress=False)
    m = dng_metrics(structures, ref, num_unreadable=2, with_coverage=False, progress=False)
    assert m.struct_valid == pytest.approx(0.5) and m.num_samples == 4


def test_sample_dir_errors(tmp_path):
    with pytest.raises(InputError):
        load_sample_dir(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .cif"):
        load_sample_dir(tmp_path / "empty")


def test_reference_profile_cached(tmp_path, cache):
    csv = tmp_path / "ref.csv"
    _write_csv(csv, prim_set())
    first = reference_profile(csv, progress=False)
    assert len(list(cache.glob("profile-*.npz"))) == 1
    second = reference_profile(csv, progress=False)
    assert (first.spacegroups == second.spacegroups).all()
    assert sorted(first.spacegroups.tolist()) == [216, 221, 221, 225, 229]
    with pytest.raises(DataError):
        reference_profile(tmp_path / "nope.csv")


def test_dataset_guess():
    assert dataset_from_path("/x/perov_5/test.csv.gz") == "perov_5"
    assert dataset_from_path("/x/other.csv") is None


def test_cli_dng_json(tmp_path, cache, capsys):
    structures = prim_set()
    ref = tmp_path / "ref.csv"
    _write_csv(ref, structures)
    train = tmp_path / "train.csv"
    _write_csv(train, structures[:2])
    samples = tmp_path / "samples"
    samples.mkdir()
    for i, s in enumerate(structures):
        s.to(filename=str(samples / f"s{i}.cif"))
    (samples / "junk.cif").write_text("not a cif")
    rc = main(["evaluate", "dng", "--samples", str(samples), "--reference", str(ref), "--train", str(train),
               "--plots", str(tmp_path / "plots"), "--json", "--no-progress"])
    assert rc == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 1
    payload = json.loads(lines[0])
    assert KEYS <= set(payload)
    for key in KEYS:
        assert 0.0 <= payload[key] <= 1.0 or key.startswith("wdist")
    assert payload["struct_valid"] == pytest.approx(5 / 6)
    assert payload["num_unreadable"] == 1
    assert payload["novel_rate"] == pytest.approx(3 / 5)
    assert payload["num_novel_templates"] == 3
    assert "junk.cif" in err
    assert {p.name for p in (tmp_path / "plots").glob("*.png")} == {"spacegroups.png", "lattice.png", "density.png"}


def test_cli_dng_empty_dir_is_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    ref = tmp_path / "ref.csv"
    _write_csv(ref, prim_set()[:1])
    assert main(["evaluate", "dng", "--samples", str(tmp_path / "empty"), "--reference", str(ref)]) == 2
    assert "error:" in capsys.readouterr().err
