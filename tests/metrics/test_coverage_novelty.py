"""Coverage (CDVAE COV-R / COV-P), uniqueness and novelty on tiny sets."""

from __future__ import annotations

import numpy as np
import pytest

from crystalflow.errors import InputError
from crystalflow.metrics.coverage import (
    Fingerprints,
    composition_fingerprint,
    coverage,
    coverage_cutoffs,
    fingerprints,
    scale_composition_fingerprints,
    structure_fingerprint,
)
from crystalflow.metrics.novelty import novelty_metrics, uniqueness_flags

from .conftest import bcc_fe, cscl_nacl, rocksalt_nacl, zincblende_gaas
from .test_csp import perturbed


@pytest.fixture(scope="module")
def prim_set():
    return [rocksalt_nacl().get_primitive_structure(), bcc_fe().get_primitive_structure(),
            zincblende_gaas().get_primitive_structure()]


def test_fingerprint_shapes(prim_set):
    s = structure_fingerprint(prim_set[0])
    c = composition_fingerprint(prim_set[0].composition)
    assert s.shape == (61,) and np.all(np.isfinite(s))
    assert c.shape == (132,)
    scaled = scale_composition_fingerprints(np.full((1, 132), np.nan))
    assert np.all(scaled == 0)


def test_cutoffs():
    assert coverage_cutoffs("mp_20") == (0.4, 10.0)
    assert coverage_cutoffs("carbon_24") == (0.2, 4.0)
    assert coverage_cutoffs("perov_5") == (0.2, 4.0)
    with pytest.raises(InputError):
        coverage_cutoffs("qm9")


def test_identical_sets_have_full_coverage(prim_set):
    fp = fingerprints(prim_set, progress=False)
    m = coverage(fp, fp, struct_cutoff=0.4, comp_cutoff=10.0)
    assert m.cov_recall == 1.0 and m.cov_precision == 1.0
    assert m.amsd_recall == pytest.approx(0.0) and m.amcd_precision == pytest.approx(0.0)


def test_coverage_counts_missing_fingerprints_in_precision(prim_set):
    fp = fingerprints(prim_set, progress=False)
    broken = Fingerprints(fp.struct.copy(), fp.comp.copy(), fp.ok.copy())
    broken.ok[2] = False
    m = coverage(broken, fp, struct_cutoff=0.4, comp_cutoff=10.0)
    assert m.cov_precision == pytest.approx(2 / 3)
    assert m.cov_recall == pytest.approx(2 / 3)
    # reference only NaCl: precision counts samples near it, recall is 1
    ref = Fingerprints(fp.struct[:1], fp.comp[:1], fp.ok[:1])
    m = coverage(fp, ref, struct_cutoff=0.4, comp_cutoff=10.0)
    assert m.cov_recall == 1.0 and m.cov_precision == pytest.approx(1 / 3)


def test_uniqueness_and_novelty():
    a, b = rocksalt_nacl(), perturbed(rocksalt_nacl(), 0.01)
    samples = [a, b, cscl_nacl(), bcc_fe()]
    assert uniqueness_flags(samples, progress=False) == [True, False, True, True]
    m = novelty_metrics(samples, train=[rocksalt_nacl().get_primitive_structure()], progress=False)
    assert m.unique_rate == pytest.approx(0.75)
    assert m.novel_rate == pytest.approx(0.5)
    assert m.unique_novel_rate == pytest.approx(0.5)
    assert novelty_metrics(samples, progress=False).novel_rate is None
