"""SMACT validity equal to SMACT 2.2.1 (the version CDVAE pins) on its two edge cases.

The expected values were computed with CDVAE's ``smact_validity`` on SMACT 2.2.1 itself (wheel
unpacked, not installed). With SMACT 4's kept 2.x list (Ir -3 instead of -2) and a Pauling test
that skips same-sign pairs lacking an electronegativity (Pm has none), each of these flips.
"""

from __future__ import annotations

import pytest

from crystalflow.metrics.validity import _pauling_test_cdvae, _smact_element_data, smact_validity

SMACT_221 = {
    "IrB2": True, "Ir3B2": True, "IrSi2": True, "IrP2": True, "IrTe": True, "Ir2Te3": False,
    "PmLiO2": False, "PmNaCl3": False, "PmLiF3": False, "Pm2Li2O3": False,
    "PmCl3": True, "Pm2O3": True, "PmLi": False,
}


@pytest.mark.parametrize("formula,expected", sorted(SMACT_221.items()))
def test_matches_smact_221(formula, expected):
    assert smact_validity(formula) is expected


def test_iridium_states_are_the_221_list():
    states, eneg = _smact_element_data("Ir")
    assert states == (-2, -1, 1, 2, 3, 4, 5, 6, 7, 8) and eneg == pytest.approx(2.2)


def test_pauling_semantics_of_221():
    assert _pauling_test_cdvae((1, -1), (None, 3.0))  # opposite signs, missing: TypeError -> pass
    assert not _pauling_test_cdvae((3, 1, -2), (None, 0.98, 3.44))  # same sign, missing: fail
    assert not _pauling_test_cdvae((1, -1), (3.0, 1.0))
