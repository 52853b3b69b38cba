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


# ----------------------------------------------------------------------- sampling floor
def _synthetic_profile(n: int, seed: int):
    """A profile with a realistic shape: skewed space groups, spread densities, 1-5 elements."""
    import numpy as np

    from crystalflow.metrics.reference import ReferenceProfile

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, 231) ** 1.2
    groups = rng.choice(np.arange(1, 231), size=n, p=weights / weights.sum())
    return ReferenceProfile(
        densities=rng.gamma(6.0, 1.0, size=n), num_elements=rng.integers(1, 6, size=n),
        spacegroups=groups, templates=np.array(["x"] * n), lattice=np.zeros((n, 6)),
    )


def test_sampling_floor_falls_with_sample_size_and_is_seeded():
    from crystalflow.metrics.dng import sampling_floor

    ref = _synthetic_profile(5000, 0)
    floors = [sampling_floor(ref, n, repeats=10) for n in (100, 1000, 20000)]
    for key in ("wdist_density", "wdist_num_elems", "d_sg"):
        means = [getattr(f, key)[0] for f in floors]
        assert means[0] > means[1] > means[2] >= 0.0, (key, means)
    assert floors[2].d_sg[0] < 0.5 * floors[0].d_sg[0]
    again = sampling_floor(ref, 1000, repeats=10)
    assert again == floors[1]
    assert sampling_floor(ref, 1000, repeats=10, seed=1) != floors[1]


def test_an_exact_sampler_scores_at_its_floor():
    """Crystals drawn from the data distribution (a second independent draw) score within the
    floor's spread; a shifted sampler scores far above it."""
    import numpy as np

    from crystalflow.metrics.distribution import wasserstein_1d
    from crystalflow.metrics.dng import sampling_floor
    from crystalflow.metrics.symmetry import d_sg

    ref = _synthetic_profile(8000, 0)
    exact = _synthetic_profile(800, 1)
    floor = sampling_floor(ref, 800)
    measured = {
        "wdist_density": wasserstein_1d(exact.densities, ref.densities),
        "wdist_num_elems": wasserstein_1d(exact.num_elements.astype(float), ref.num_elements.astype(float)),
        "d_sg": d_sg(exact.spacegroups.tolist(), ref.spacegroups.tolist()),
    }
    for key, value in measured.items():
        mean, std = getattr(floor, key)
        assert abs(value - mean) < 4 * std + 1e-3, (key, value, mean, std)
    shifted = wasserstein_1d(exact.densities + 0.5, ref.densities)
    assert shifted > floor.wdist_density[0] + 4 * floor.wdist_density[1]
    # a pool from the same distribution gives about the same floor as the bootstrap
    pooled = sampling_floor(ref, 800, pool=_synthetic_profile(8000, 2))
    assert abs(pooled.d_sg[0] - floor.d_sg[0]) < 4 * floor.d_sg[1]
    assert np.isfinite(pooled.wdist_density[0])


def test_sampling_floor_rejects_empty_and_nonpositive():
    from crystalflow.metrics.dng import sampling_floor

    ref = _synthetic_profile(10, 0)
    with pytest.raises(ValueError):
        sampling_floor(ref, 0)
    with pytest.raises(ValueError):
        sampling_floor(ref, 5, repeats=0)


def test_dng_metrics_reports_the_floor(cache):
    structures = prim_set()
    ref = profile_structures(structures, progress=False)
    m = dng_metrics(structures, ref, with_coverage=False, progress=False)
    d = m.to_dict()
    for key in ("floor_wdist_density", "floor_wdist_num_elems", "floor_d_sg"):
        assert 0.0 <= d[key] < 1e3
    # five crystals drawn from five: the bootstrap repeats some, so the floor is above zero
    assert m.floor_d_sg > 0.0 and m.d_sg == pytest.approx(0.0, abs=1e-12)
