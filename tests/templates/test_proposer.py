"""Proposer and pipeline: substitutions keep the composition, ranking is ordered, outputs checked."""

from __future__ import annotations

from collections import Counter

import pytest
from pymatgen.core import Composition

from crystalflow.crystal_tasks.pipeline import Candidate, PipelineConfig, predict_compositions, rank_candidates
from crystalflow.symmetry import analyze_structure
from crystalflow.templates import anonymous_key, load_library, propose
from crystalflow.templates.proposer import _assignments


def counts(formula: str) -> dict[int, int]:
    return {el.Z: int(n) for el, n in Composition(formula).items()}


@pytest.fixture(scope="module")
def library():
    return load_library()


@pytest.mark.parametrize("formula", ["SrTiO3", "NaCl", "Li2O", "CaF2", "BaTiO3", "LiFePO4",
                                     "Mg2Si", "Cs3Sb", "GaN", "KMgF3", "Al2O3"])
def test_substitutions_keep_the_target_composition(library, formula):
    """Every proposal is a bijection of elements onto the target's, its template holds the target
    composition (at some number of formula units), and the list is best first."""
    target = counts(formula)
    props = propose(library, target, top=20)
    assert props, formula
    key = anonymous_key(target)[0]
    for p in props:
        assert sorted(p.mapping.values()) == sorted(target)
        assert len(set(p.mapping.values())) == len(p.mapping)
        comp = p.template.composition
        assert set(comp) == set(target)
        assert anonymous_key(comp)[0] == key
        # the reduced compositions are equal, not only the anonymous ones
        assert Composition({z: n for z, n in comp.items()}).reduced_formula == \
            Composition({z: n for z, n in target.items()}).reduced_formula
    keys = [(not p.same_size, p.distance) for p in props]
    assert keys == sorted(keys)
    labels = [(p.template.space_group, tuple(sorted(zip(p.template.letters, p.template.atom_types))))
              for p in props]
    assert len(set(labels)) == len(labels)  # de-duplicated prototypes


def test_same_chemistry_in_the_library_has_distance_zero(library):
    """A library crystal's own composition proposes (at least) that crystal at distance 0."""
    for i in library.by_formula[(1, 1, 3)][:20]:
        target = library.entry(i).primitive_counts
        props = propose(library, target, top=5)
        assert props[0].distance == 0.0 and props[0].same_size


def test_exact_size_keeps_the_number_of_formula_units(library):
    props = propose(library, counts("Na4Cl4"), top=10, exact_size=True)
    assert props and all(p.same_size for p in props)
    for p in props:
        prim = sum(p.entry.primitive_counts.values())
        assert prim == 8


def test_assignments_only_swap_equal_counts():
    perms = _assignments([1, 1, 3])
    assert sorted(perms) == [(0, 1, 2), (1, 0, 2)]
    assert _assignments([1, 2, 4]) == [(0, 1, 2)]
    assert len(_assignments([1, 1, 1, 1])) == 24


def test_substituted_structure_keeps_space_group_and_rescales_volume(library):
    """The substituted crystal is in its template's space group (spglib, symprec 0.1) with the
    target composition, and its volume per atom is the source's times the fitted ratio."""
    for formula in ("SrTiO3", "KCl", "CaF2"):
        p = propose(library, counts(formula), top=1)[0]
        s = p.structure(library)
        assert s.composition.reduced_formula == Composition(formula).reduced_formula
        assert analyze_structure(s).space_group == p.template.space_group
        src = p.entry
        from pymatgen.core import Lattice

        v_src = Lattice.from_parameters(*src.lattice).volume / p.template.num_atoms
        ratio = library.volume_per_atom(p.template.composition) / library.volume_per_atom(src.template.composition)
        assert s.volume / len(s) == pytest.approx(v_src * ratio, rel=1e-6)


def test_no_template_falls_back_to_flows(library, one_thread):
    """A composition whose anonymous formula the library lacks gets enumerated space-group flow
    and P1 candidates, and says so in ``source``."""
    target = counts("Li11Ta2Cl3")
    assert not propose(library, target)
    ranked = predict_compositions([target], config=PipelineConfig(rank="similarity",
                                  fallback_samples=2, steps=2), library=library, progress=False,
                                  keep_all=True)
    sources = {c.source for c in ranked[0]}
    assert sources <= {"enumerated", "p1"} and "p1" in sources
    for c in ranked[0]:
        assert Counter(s.specie.Z for s in c.structure) == Counter(target) or \
            c.source == "enumerated"


def test_rank_candidates_orders_valid_by_energy():
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(4), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    c = [Candidate(s, "template", energy=-1.0, proposal_rank=0, min_distance=2.0),
         Candidate(s, "flow", energy=-3.0, proposal_rank=1, min_distance=0.2),
         Candidate(s, "p1", energy=-2.0, min_distance=2.0),
         Candidate(s, "template", energy=None, proposal_rank=2, min_distance=2.0)]
    ranked = rank_candidates(c)
    assert [x.energy for x in ranked] == [-2.0, -1.0, None, -3.0]  # invalid last, unknown energy late
    by_sim = rank_candidates(c, rank="similarity")
    assert [x.proposal_rank for x in by_sim][:3] == [0, 2, 10**6]


def test_pipeline_ranks_by_chgnet_and_checks_outputs(library, one_thread):
    """Candidates come out in order of their score (CHGNet energy and prototype vote), every one
    has an energy; outputs carry their check; the perovskite SrTiO3 cell comes out cubic (Pm-3m)."""
    config = PipelineConfig(templates=4)
    ranked = predict_compositions([counts("SrTiO3")], config=config,
                                  library=library, progress=False, keep_all=True)[0]
    assert len(ranked) >= 2 and all(c.energy is not None for c in ranked)
    scores = [c.score(config.energy_weight) for c in ranked]
    assert scores == sorted(scores)
    best = ranked[0]
    assert best.check is not None and best.check.ok
    assert best.check.space_group == 221
    assert best.source == "template"


@pytest.mark.parametrize("argv,message", [
    (["--composition", "FmCl3"], "CHGNet has no data for Fm"),
    (["--composition", "ArCl"], "no crystal of the template library contains Ar"),
    (["--composition", "NaCl", "--p1", "--templates", "3"], "belong to the composition pipeline"),
    (["--composition", "NaCl", "--start-time", "1"], "start-time"),
    (["--composition", "NaCl", "--templates", "-1"], "--templates"),
])
def test_bad_pipeline_requests_fail_before_any_work(tmp_path, capsys, argv, message):
    """One line on stderr, exit status 2, no output folder."""
    from crystalflow.cli import main

    dest = tmp_path / "never"
    code = main(["predict", *argv, "--out", str(dest)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not dest.exists()


def test_predict_cli_writes_the_best_structure_and_a_summary(tmp_path, capsys, one_thread):
    """--num-samples K writes <stem>_0..K-1 (no extra <stem>.cif), summary.csv names the source
    and template of each, and a second run into the same folder needs --overwrite."""
    import csv

    from crystalflow.cli import main

    dest = tmp_path / "out"
    assert main(["predict", "--composition", "KMgF3", "--fast", "--num-samples", "2", "--out", str(dest)]) == 0
    assert sorted(p.name for p in dest.glob("*.cif")) == ["KMgF3_0.cif", "KMgF3_1.cif"]
    rows = list(csv.DictReader(open(dest / "summary.csv")))
    assert [r["file"] for r in rows] == ["KMgF3_0.cif", "KMgF3_1.cif"]
    assert all(r["source"] == "template" and r["template"] and r["ok"] == "True" for r in rows)
    assert rows[0]["space_group"] == "221"  # the cubic perovskite
    capsys.readouterr()
    assert main(["predict", "--composition", "KMgF3", "--fast", "--out", str(dest)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["predict", "--composition", "KMgF3", "--fast", "--out", str(dest), "--overwrite"]) == 0
    assert sorted(p.name for p in dest.glob("*.cif")) == ["KMgF3.cif"]


def test_distinct_best_puts_different_crystals_first():
    """An origin-shifted, rescaled copy of the best crystal waits behind a different crystal, and
    fills a place only when no other crystal is left."""
    from pymatgen.core import Lattice, Structure

    from crystalflow.crystal_tasks.pipeline import distinct_best

    perov = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                      [[0, 0, 0], [.5, .5, .5], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    shifted = Structure(Lattice.cubic(4.1), ["Sr", "Ti", "O", "O", "O"],
                        [[.5, .5, .5], [0, 0, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5]])
    other = Structure(Lattice.tetragonal(3.9, 4.6), ["Sr", "Ti", "O", "O", "O"],
                      [[0, 0, 0], [.5, .5, .55], [0, .5, .5], [.5, 0, .5], [.5, .5, .1]])
    ranked = [Candidate(perov, "template"), Candidate(shifted, "template"), Candidate(other, "template")]
    assert [c.structure for c in distinct_best(ranked, 2)] == [perov, other]
    assert [c.structure for c in distinct_best(ranked, 3)] == [perov, other, shifted]
    assert distinct_best(ranked, 1)[0].structure is perov
    # a crystal with overlapping atoms waits behind a valid repeat
    broken = Candidate(other, "flow", min_distance=0.1)
    assert [c.structure for c in distinct_best(ranked[:2] + [broken], 2)] == [perov, shifted]
