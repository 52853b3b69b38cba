"""CSP match rate / RMSE: matcher behaviour on known pairs and the k-sample logic."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalflow.metrics.csp import CSPMetrics, aggregate_csp_scores, csp_metrics, rms_match

from .conftest import bcc_fe, cscl_nacl, rocksalt_nacl, zincblende_gaas


def perturbed(s: Structure, sigma: float = 0.05, seed: int = 0) -> Structure:
    rng = np.random.default_rng(seed)
    out = s.copy()
    for i in range(len(out)):
        out.translate_sites([i], rng.normal(0, sigma, 3), frac_coords=False, to_unit_cell=True)
    return out


def test_structure_matches_itself(nacl):
    assert rms_match(nacl, nacl) == pytest.approx(0.0, abs=1e-6)


def test_perturbed_copy_matches_with_small_rms(nacl):
    rms = rms_match(perturbed(nacl), nacl)
    assert rms is not None and 0 < rms < 0.05


def test_primitive_cell_matches_conventional(nacl):
    assert rms_match(nacl.get_primitive_structure(), nacl) == pytest.approx(0.0, abs=1e-6)


def test_different_polymorph_does_not_match(nacl, nacl_cscl):
    assert rms_match(nacl_cscl, nacl) is None
    assert rms_match(nacl, nacl_cscl) is None


def test_different_composition_does_not_match(nacl):
    assert rms_match(zincblende_gaas(), nacl) is None


def _invalid_copy(s: Structure) -> Structure:
    """Same lattice and species but two atoms 0.3 A apart: structurally invalid."""
    out = s.copy()
    out.replace(1, out[1].species, out[0].coords + np.array([0.3, 0, 0]), coords_are_cartesian=True)
    return out


def test_k_sample_logic():
    refs = [rocksalt_nacl(), bcc_fe(), zincblende_gaas(), cscl_nacl()]
    preds = [
        [cscl_nacl(), perturbed(rocksalt_nacl(), 0.02)],  # second sample matches
        [None, bcc_fe()],  # None is a miss, the other matches exactly
        [],  # no prediction at all
        [rocksalt_nacl(), None],  # wrong polymorph only
    ]
    m = csp_metrics(preds, refs, progress=False)
    assert isinstance(m, CSPMetrics)
    assert m.match_rate == pytest.approx(0.5)
    assert m.match_rate_unfiltered == pytest.approx(0.5)
    assert m.num_references == 4
    assert m.num_samples == 4
    assert m.num_missing == 1
    assert m.max_samples_per_reference == 2
    assert 0 < m.rmse < 0.05
    d = m.to_dict()
    assert set(d) >= {"match_rate", "rmse", "match_rate_unfiltered", "rmse_unfiltered", "num_references", "num_samples"}


def test_best_of_k_takes_minimum_rms():
    ref = rocksalt_nacl()
    far, near = perturbed(ref, 0.08, seed=1), perturbed(ref, 0.01, seed=2)
    m1 = csp_metrics([[far, near]], [ref], progress=False)
    assert m1.rmse == pytest.approx(min(rms_match(far, ref), rms_match(near, ref)))


def test_invalid_prediction_counts_only_unfiltered():
    # A composition that fails SMACT yet matches itself: NaCl2 in a made-up cell
    s = Structure(Lattice.cubic(6.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]])
    m = csp_metrics([[s.copy()]], [s], progress=False)
    assert m.match_rate == 0.0 and m.rmse is None
    assert m.match_rate_unfiltered == 1.0 and m.rmse_unfiltered == pytest.approx(0.0, abs=1e-6)
    assert m.num_valid_samples == 0


def test_aggregate_from_scores():
    m = aggregate_csp_scores([[(True, 0.1), (False, 0.01)], [(False, None)], []], 2)
    assert m.match_rate == pytest.approx(1 / 3)
    assert m.rmse == pytest.approx(0.1)
    assert m.match_rate_unfiltered == pytest.approx(1 / 3)
    assert m.rmse_unfiltered == pytest.approx(0.01)
    assert m.num_samples == 3 and m.num_valid_samples == 1 and m.num_missing == 1


def test_length_mismatch_raises(nacl):
    with pytest.raises(ValueError):
        csp_metrics([[nacl]], [nacl, nacl], progress=False)


@pytest.mark.slow
def test_parallel_equals_serial():
    refs = [rocksalt_nacl(), bcc_fe(), zincblende_gaas()]
    preds = [[perturbed(r, 0.03, seed=i)] for i, r in enumerate(refs)]
    serial = csp_metrics(preds, refs, progress=False)
    parallel = csp_metrics(preds, refs, workers=2, progress=False)
    for key, value in serial.to_dict().items():
        assert parallel.to_dict()[key] == pytest.approx(value, rel=1e-9)
