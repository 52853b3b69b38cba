"""Templates: validation, composition parsing and enumeration."""

from __future__ import annotations

import time

import pytest

from crystalflow.errors import InputError
from crystalflow.symmetry import WyckoffTemplate, enumerate_templates, parse_composition


def test_template_properties():
    t = WyckoffTemplate(225, ("a", "b"), (11, 17))
    assert t.num_atoms == 8 and t.composition == {11: 4, 17: 4}
    assert hash(t) == hash(WyckoffTemplate(225, ["a", "b"], [11, 17]))


@pytest.mark.parametrize(
    "args, match",
    [
        ((0, ("a",), (1,)), "1 to 230"),
        ((231, ("a",), (1,)), "1 to 230"),
        ((225, ("z",), (1,)), "does not exist in space group 225"),
        ((225, ("a", "a"), (1, 2)), "no free parameter and is used twice"),
        ((225, ("a",), (1, 2)), "1 Wyckoff letters but 2 types"),
        ((225, ("a",), (0,)), "not an element"),
        ((225, (), ()), "no orbits"),
    ],
)
def test_bad_templates_raise(args, match):
    with pytest.raises(InputError, match=match):
        WyckoffTemplate(*args)


def test_parse_composition():
    assert parse_composition("Na4Cl4") == {11: 4, 17: 4}
    assert parse_composition({"O": 2, 14: 1}) == {8: 2, 14: 1}
    for bad in ("Xx2", {"Na": 1.5}, {"Na": 0}, "", {999: 1}):
        with pytest.raises(InputError):
            parse_composition(bad)


def test_enumerate_rock_salt_and_perovskite():
    rock_salt = enumerate_templates(225, "Na4Cl4")
    assert {(t.letters, t.atom_types) for t in rock_salt} == {
        (("a", "b"), (11, 17)),
        (("b", "a"), (11, 17)),
    }
    perovskite = enumerate_templates(221, "SrTiO3", max_templates=1000)
    keys = {tuple(sorted(zip(t.atom_types, t.letters))) for t in perovskite}
    assert ((8, "c"), (22, "b"), (38, "a")) in keys or ((8, "d"), (22, "b"), (38, "a")) in keys
    for t in perovskite:
        assert t.composition == {8: 3, 22: 1, 38: 1}


def test_enumerate_respects_limits_and_composition():
    templates = enumerate_templates(62, {"Ca": 4, "Ti": 4, "O": 12}, max_templates=7)
    assert len(templates) == 7
    assert all(t.composition == {8: 12, 20: 4, 22: 4} for t in templates)
    assert len({(t.letters, t.atom_types) for t in templates}) == 7
    # P1 with 20 atoms: a single template, found at once.
    (p1,) = enumerate_templates(1, "Fe20")
    assert p1.letters == ("a",) * 20
    # Parameter-free positions are never shared by two orbits.
    for t in enumerate_templates(229, "Fe2Co6", max_templates=50):
        fixed = [x for x, wp in zip(t.letters, t.positions) if wp.dof == 0]
        assert len(fixed) == len(set(fixed))


def test_composition_that_fits_no_template_raises_with_hint():
    with pytest.raises(InputError, match=r"fits no combination .* 225 .*x4"):
        enumerate_templates(225, "NaCl")
    with pytest.raises(InputError, match="1 to 230"):
        enumerate_templates(0, "NaCl")
    with pytest.raises(InputError):
        enumerate_templates(225, "Xx4")


def test_hopeless_searches_fail_fast():
    start = time.perf_counter()
    # Eleven single atoms need eleven 1-fold positions; Pmmm has eight.
    with pytest.raises(InputError, match="fits no combination"):
        enumerate_templates(47, {z: 1 for z in range(1, 12)})
    # Many species over many positions: either templates or a bounded-search error.
    try:
        enumerate_templates(47, {z: 2 for z in range(1, 16)}, max_templates=5)
    except InputError as err:
        assert "search budget" in str(err) or "fits no combination" in str(err)
    assert time.perf_counter() - start < 20
