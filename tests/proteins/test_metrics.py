"""Backbone metrics on constructed geometries with known answers and on real chains."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from crystalflow.errors import InputError
from crystalflow.proteins.io import read_backbones, split_segments
from crystalflow.proteins.metrics import (
    backbone_metrics, ca_ca_in_range, clash_count, compact_rg, format_table, length_matched_crops,
    pairwise_tm, radius_of_gyration, sse_fractions, tm_score,
)


def ideal_helix(n: int) -> np.ndarray:
    """CA trace of an alpha helix: radius 2.3 A, rise 1.5 A, 100 degrees per residue."""
    k = np.arange(n)
    ang = np.radians(100.0) * k
    return np.stack([2.3 * np.cos(ang), 2.3 * np.sin(ang), 1.5 * k], -1)


def strand(n: int) -> np.ndarray:
    """A zig-zag extended CA trace (3.8 A steps, 3.3 A rise per residue)."""
    k = np.arange(n)
    return np.stack([3.3 * k, 0.95 * (-1.0) ** k, np.zeros(n)], -1)


def test_ca_ca_of_an_ideal_helix_is_in_range():
    ca = ideal_helix(30)
    d = np.linalg.norm(ca[1:] - ca[:-1], axis=-1)
    assert d.mean() == pytest.approx(3.8, abs=0.05)
    assert ca_ca_in_range(ca) == 1.0
    assert ca_ca_in_range(2 * ca) == 0.0


def test_sse_recognises_a_helix():
    helix, _, _ = sse_fractions(ideal_helix(40))
    assert helix > 0.8


def test_clashes_radius_of_gyration_and_compactness():
    ca = strand(10)
    assert clash_count(ca) == 0
    squashed = ca.copy()
    squashed[7] = squashed[2] + 0.5
    assert clash_count(squashed) >= 1
    pts = np.array([[1.0, 0, 0], [-1.0, 0, 0]])
    assert radius_of_gyration(pts) == pytest.approx(1.0)
    assert compact_rg(100) == pytest.approx(2.2 * 100**0.38)


def test_tm_score_is_one_for_a_rigid_copy_and_lower_otherwise():
    pytest.importorskip("tmtools")
    from scipy.spatial.transform import Rotation

    ca = ideal_helix(40)
    moved = ca @ Rotation.from_euler("xyz", [0.3, 1.0, -2.0]).as_matrix().T + 7.0
    assert tm_score(ca, moved) == pytest.approx(1.0, abs=1e-3)
    assert tm_score(ca, strand(40)) < 0.5
    assert pairwise_tm([ca, moved]) == pytest.approx(1.0, abs=1e-3)
    assert math.isnan(pairwise_tm([ca]))


def test_metrics_of_real_chains_look_native(real_files):
    segs = [s.coords for f in real_files for ch in read_backbones(f) for s in split_segments(ch, 40)]
    m = backbone_metrics(segs, max_tm_pairs=10)
    assert m.chains == len(segs)
    assert m.ca_ca_in_range > 0.95
    assert m.clash_chains == 0.0
    assert 0.7 < m.rg_ratio < 1.6
    assert abs(m.helix + m.strand + m.coil - 1) < 1e-6
    try:
        import tmtools  # noqa: F401
    except ImportError:
        assert math.isnan(m.pairwise_tm)
    else:
        assert 0 < m.pairwise_tm < 0.6
    table = format_table({"real": m.to_dict()})
    assert "CA-CA in 3.6-4.0 A" in table and table.count("\n") >= 13


def test_length_matched_crops(real_files):
    segs = [s.coords for f in real_files for ch in read_backbones(f) for s in split_segments(ch, 40)]
    crops = length_matched_crops(segs, 64, 10, seed=0)
    assert len(crops) == 10 and all(c.shape == (64, 4, 3) for c in crops)
    with pytest.raises(InputError):
        length_matched_crops(segs, 5000, 1)


def test_bad_metric_input_is_a_clear_error():
    with pytest.raises(InputError):
        backbone_metrics([])
    with pytest.raises(InputError):
        backbone_metrics([torch.zeros(2, 3)])


def test_diversity_is_nan_without_tmtools(monkeypatch):
    """tmtools is an optional dependency: without it the TM-score diversity is NaN, not an error."""
    import sys

    monkeypatch.setitem(sys.modules, "tmtools", None)  # makes ``import tmtools`` raise ImportError
    ca = ideal_helix(20)
    assert math.isnan(pairwise_tm([ca, strand(20)]))
    assert math.isnan(backbone_metrics([torch.from_numpy(ca), torch.from_numpy(strand(20))]).pairwise_tm)
