"""Reward steering (crystalflow.crystal_tasks.steering): resampling maths, the sampling hook, best-of-N / SMC
properties and the ``generate --steer`` options (tiny random DNG model, no CHGNet)."""

from __future__ import annotations

import math

import pytest
import torch

from crystalflow.cli import main
from crystalflow.errors import InputError
from crystalflow.crystal_tasks.generation import generate_crystals
from crystalflow.crystal_tasks.rewards import CLASH_PENALTY, DensityReward, VolumeReward
from crystalflow.crystal_tasks.repeats import RepeatMemory, pick_avoiding_repeats, top_avoiding_repeats
from crystalflow.crystal_tasks.steering import (
    SteeredSampler, SteeringConfig, best_in_groups, gather_particles, group_weights, resample_indices,
    top_in_groups,
)
from crystalflow.symmetry import collate_symmetry, crystal_symmetry

from .conftest import SKELETONS, tiny_flow


class Recording:
    """A reward that records every batch it scores: volume per atom (A^3), lower is better."""

    def __init__(self):
        self.batches: list[list[float]] = []

    def __call__(self, structures):
        values = [s.volume / len(s) for s in structures]
        self.batches.append(values)
        return values


def test_weights_are_normalised_and_ignore_non_finite():
    r = torch.tensor([0.0, 0.1, 0.2, 5.0, math.inf, math.nan, math.inf, math.nan])
    w = group_weights(r, 4, 0.1)
    assert w.shape == (2, 4)
    assert torch.allclose(w.sum(-1), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(w[0, :3] / w[0, 0], torch.exp(-torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)))
    assert torch.allclose(w[1], torch.full((4,), 0.25, dtype=torch.float64))  # all dead: uniform
    w2 = group_weights(torch.tensor([1.0, math.inf]), 2, 0.1)
    assert w2[0].tolist() == [1.0, 0.0]


def test_resampling_stays_in_groups_and_keeps_the_count():
    gen = torch.Generator().manual_seed(0)
    r = torch.rand(5 * 3, generator=gen)
    src = resample_indices(r, 3, 0.05, gen)
    assert src.shape == (15,)
    assert torch.equal(src // 3, torch.arange(15) // 3)
    # a dominant particle takes its whole group; constant rewards leave every particle possible
    r = torch.tensor([0.0, 9.0, 9.0])
    assert resample_indices(r, 3, 0.01, gen).tolist() == [0, 0, 0]
    counts = torch.bincount(torch.cat([resample_indices(torch.zeros(3), 3, 1.0, gen) for _ in range(300)]), minlength=3)
    assert counts.min() > 200  # uniform: ~300 each
    assert torch.equal(resample_indices(torch.rand(4), 1, 0.1), torch.arange(4))


def test_best_in_groups_is_the_argmin_and_never_worse_than_particle_zero():
    gen = torch.Generator().manual_seed(1)
    r = torch.randn(6 * 4, generator=gen)
    r[5] = math.nan
    best = best_in_groups(r, 4)
    groups = r.reshape(6, 4).nan_to_num(math.inf)
    assert torch.equal(r[best], groups.min(-1).values.to(r.dtype))
    assert (r[best] <= groups[:, 0].to(r.dtype)).all()


def test_gather_copies_whole_particles():
    skeletons = [SKELETONS.skeletons[2]] * 2 + [SKELETONS.skeletons[4]] * 2
    sym = collate_symmetry([crystal_symmetry(s.template()) for s in skeletons])
    n, b, m = int(sym.num_atoms.sum()), len(skeletons), int(sym.num_orbits.sum())
    state = {"frac": torch.rand(n, 3), "lattice": torch.rand(b, 6), "types": torch.arange(m)}
    same = gather_particles(state, sym, torch.arange(b))
    assert all(torch.equal(same[k], state[k]) for k in state)
    out = gather_particles(state, sym, torch.tensor([1, 1, 3, 2]))
    a0, a1 = int(sym.num_atoms[0]), int(sym.num_atoms[:2].sum())
    assert torch.equal(out["frac"][:a0], state["frac"][a0:a1]) and torch.equal(out["frac"][a0:a1], state["frac"][a0:a1])
    assert torch.equal(out["lattice"], state["lattice"][[1, 1, 3, 2]])
    o0 = int(sym.num_orbits[0])
    assert torch.equal(out["types"][:o0], state["types"][o0:2 * o0])
    with pytest.raises(ValueError, match="layout"):
        gather_particles(state, sym, torch.tensor([2, 1, 3, 2]))


def _plain(flow, skeletons, seed):
    return flow.sample(skeletons, steps=6, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", ["best-of-n", "smc"])
def test_one_particle_reproduces_plain_sampling(method):
    flow = tiny_flow()
    skeletons = SKELETONS.sample(5, torch.Generator().manual_seed(0))
    plain = _plain(flow, skeletons, 3)
    sampler = SteeredSampler(flow, SteeringConfig(method, 1, (0.3, 0.6)), reward=Recording())
    steered = sampler(skeletons, steps=6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(plain.frac, steered.frac) and torch.equal(plain.atom_types, steered.atom_types)
    assert torch.equal(plain.lattice, steered.lattice)


@pytest.mark.parametrize("method,times", [("best-of-n", ()), ("smc", (0.25, 0.5, 0.75))])
def test_steering_keeps_layout_counts_calls_and_keeps_the_best(method, times):
    flow = tiny_flow()
    skeletons = SKELETONS.sample(4, torch.Generator().manual_seed(2))
    reward = Recording()
    sampler = SteeredSampler(flow, SteeringConfig(method, 3, times, temperature=0.5), reward=reward)
    out = sampler(skeletons, steps=8, generator=torch.Generator().manual_seed(0))
    assert out.num_crystals == 4
    assert out.num_atoms.tolist() == [s.num_atoms for s in skeletons]
    assert sampler.reward_calls == 4 * 3 * (len(times) + 1) == sampler.config.reward_calls * 4
    assert len(reward.batches) == len(times) + 1 and len(sampler.resampling_ess) == len(times)
    assert all(1.0 <= e <= 3.0 for e in sampler.resampling_ess)
    final = torch.tensor(reward.batches[-1]).reshape(4, 3)
    kept = [c.to_structure() for c in out.to_crystals()]
    assert [s.volume / len(s) for s in kept] == pytest.approx(final.min(-1).values.tolist(), rel=1e-5)
    assert sampler.chosen_rewards == pytest.approx(final.min(-1).values.tolist())
    assert (final.min(-1).values <= final[:, 0]).all()  # best-of-N never worse than sample 0


def test_top_in_groups_lists_each_groups_lowest_first():
    gen = torch.Generator().manual_seed(4)
    r = torch.randn(5 * 4, generator=gen, dtype=torch.float64)
    r[6] = math.nan
    top = top_in_groups(r, 4, 2).reshape(5, 2)
    groups = r.reshape(5, 4).nan_to_num(math.inf)
    assert torch.equal(top // 4, torch.arange(5)[:, None].expand(5, 2))  # within the group
    assert torch.equal(r[top], groups.sort(-1).values[:, :2])
    assert torch.equal(top[:, 0], best_in_groups(r, 4))
    assert torch.equal(top_in_groups(r, 4, 4).sort().values, torch.arange(20))


class Density:
    """A second-stage reward that records what it scores: mass density (lower is better)."""

    def __init__(self):
        self.batches: list[list[float]] = []

    def __call__(self, structures):
        values = [float(s.density) for s in structures]
        self.batches.append(values)
        return values


@pytest.mark.parametrize("method,times", [("best-of-n", ()), ("smc", (0.5,))])
def test_two_stages_keep_the_refined_best_of_the_first_stages_top(method, times):
    flow = tiny_flow()
    skeletons = SKELETONS.sample(4, torch.Generator().manual_seed(2))
    first, second = Recording(), Density()
    sampler = SteeredSampler(flow, SteeringConfig(method, 4, times, refine_top=2), reward=first, refine=second)
    out = sampler(skeletons, steps=8, generator=torch.Generator().manual_seed(0))
    assert sampler.reward_calls == 4 * sampler.config.reward_calls == 4 * (4 * (len(times) + 1) + 2)
    assert len(second.batches) == 1 and len(second.batches[0]) == 4 * 2  # only the top 2 of each group
    final = torch.tensor(first.batches[-1], dtype=torch.float64)
    top = top_in_groups(final, 4, 2).reshape(4, 2)
    # the refined values belong to each group's first-stage top 2, and the lowest of them is kept
    refined = torch.tensor(second.batches[0], dtype=torch.float64).reshape(4, 2)
    kept = [c.to_structure() for c in out.to_crystals()]
    assert [float(s.density) for s in kept] == pytest.approx(refined.min(-1).values.tolist(), rel=1e-5)
    assert [s.volume / len(s) for s in kept] == pytest.approx(
        final[top].gather(1, refined.argmin(-1, keepdim=True)).flatten().tolist(), rel=1e-5)
    assert sampler.chosen_rewards == pytest.approx(refined.min(-1).values.tolist())


def _rock_salt(a: float):
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _cesium_chloride(a: float):
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_pick_avoiding_repeats_trades_a_repeat_for_the_next_distinct_particle():
    # two groups of two: rock salt (reward 0) and CsCl-type NaCl (reward 0.05) each; the second
    # group's rock salt is the first's, 1% larger (StructureMatcher matches it)
    structures = [_rock_salt(5.6), _cesium_chloride(3.4), _rock_salt(5.66), _cesium_chloride(3.45)]
    rewards = torch.tensor([0.0, 0.05, 0.0, 0.05], dtype=torch.float64)
    for penalty, picks in ((0.0, [0, 2]), (0.01, [0, 2]), (0.1, [0, 3])):
        memory = RepeatMemory()
        got = pick_avoiding_repeats(rewards, structures, 2, penalty, memory)
        assert got.tolist() == picks, penalty
        assert len(memory) == 2 and memory.kept.keys() == {"NaCl"}
        if penalty == 0.0:
            assert torch.equal(got, best_in_groups(rewards, 2)) and memory.comparisons == 0
    # the first group's best is new (nothing kept): no test beyond it; the second group tests its
    # rock salt (a repeat) against the kept one, then its CsCl, which is new
    assert memory.comparisons == 2
    # the memory carries over: the same particles again, everything repeats, the lowest reward wins
    again = pick_avoiding_repeats(rewards, structures, 2, 0.1, memory)
    assert again.tolist() == [0, 2] and len(memory) == 4
    # nan is the worst reward, whatever the penalty
    nan = torch.tensor([math.nan, 0.3, math.nan, math.nan], dtype=torch.float64)
    assert pick_avoiding_repeats(nan, structures, 2, 0.1, RepeatMemory()).tolist() == [1, 2]
    with pytest.raises(ValueError, match="3 structures for 4 rewards"):
        pick_avoiding_repeats(rewards, structures[:3], 2, 0.1, RepeatMemory())


def test_top_avoiding_repeats_ranks_by_the_penalised_reward():
    structures = [_rock_salt(5.6), _cesium_chloride(3.4), _rock_salt(5.7), _cesium_chloride(3.3)] * 2
    gen = torch.Generator().manual_seed(1)
    rewards = torch.rand(8, generator=gen, dtype=torch.float64)
    rewards[5] = math.nan
    empty = RepeatMemory()
    for top in (1, 2, 4):  # nothing kept, or no penalty: top_in_groups
        assert torch.equal(top_avoiding_repeats(rewards, structures, 4, top, 0.3, empty), top_in_groups(rewards, 4, top))
        assert torch.equal(top_avoiding_repeats(rewards, structures, 4, top, 0.0, empty), top_in_groups(rewards, 4, top))
    assert empty.comparisons == 0 and len(empty) == 0
    kept = RepeatMemory()
    kept.add(_rock_salt(5.65))  # every rock salt particle is now a repeat
    rock = torch.tensor([s.lattice.a > 5 for s in structures])
    for top in (1, 2, 4):
        got = top_avoiding_repeats(rewards, structures, 4, top, 10.0, kept).reshape(2, top)
        cost = torch.where(rock, rewards + 10.0, rewards).nan_to_num(math.inf).reshape(2, 4)
        assert torch.equal(got % 4, cost.argsort(dim=-1, stable=True)[:, :top])
    assert len(kept) == 1  # read, not updated


def test_the_sampler_passes_over_particles_that_repeat_its_own_earlier_picks():
    """The same seed twice gives the same particles; with a constant reward the first call keeps
    each group's particle 0, so the second call must pass over every particle 0 (all repeats)."""
    flow = tiny_flow()
    skeletons = SKELETONS.sample(3, torch.Generator().manual_seed(2))
    flat = lambda structures: [0.0] * len(structures)  # noqa: E731
    sampler = SteeredSampler(flow, SteeringConfig("best-of-n", 2, repeat_penalty=0.5), reward=flat)
    first = sampler(skeletons, steps=6, generator=torch.Generator().manual_seed(0))
    assert sampler.repeats_avoided == 0 and len(sampler.memory) == 3
    second = sampler(skeletons, steps=6, generator=torch.Generator().manual_seed(0))
    assert sampler.repeats_avoided == 3 and len(sampler.memory) == 6
    assert sampler.chosen_rewards == [0.0] * 6
    assert not torch.allclose(first.frac, second.frac)
    plain = SteeredSampler(flow, SteeringConfig("best-of-n", 2), reward=flat)
    same = plain(skeletons, steps=6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(same.frac, first.frac) and len(plain.memory) == 0


class Atoms:
    """A reward preferring crystals with more atoms per cell (so a group's largest layout wins)."""

    def __call__(self, structures):
        return [-float(len(s)) for s in structures]


class Capturing(SteeredSampler):
    """A steered sampler that remembers what it returned and the draws it asked for."""

    def __call__(self, *args, **kwargs):
        self.draws = getattr(self, "draws", 0) + (kwargs.get("draw") is not None)
        self.returned = super().__call__(*args, **kwargs)
        return self.returned


def test_independent_particles_draw_their_own_skeletons_and_keep_the_winners_layout():
    flow = tiny_flow()
    small, large = SKELETONS.skeletons[0], SKELETONS.skeletons[4]  # 2 atoms (221 a,b), 12 atoms (62 c,c,c)
    asked = []

    def draw(n):
        asked.append(n)
        return [large if i % 3 == 1 else small for i in range(n)], None

    sampler = SteeredSampler(flow, SteeringConfig("best-of-n", 3, independent=True), reward=Atoms())
    assert sampler.draws_skeletons
    out = sampler([small] * 4, steps=4, generator=torch.Generator().manual_seed(0), draw=draw)
    assert asked == [4 * 2]  # K - 1 more skeletons per requested crystal, in one draw
    # group b holds (small, draw[2b], draw[2b + 1]); draws 1, 4 and 7 are large: groups 0, 2 and 3 keep one
    assert out.num_atoms.tolist() == [12, 2, 12, 12]
    assert out.symmetry.space_group.tolist() == [62, 221, 62, 62]
    assert sampler.chosen_rewards == [-12.0, -2.0, -12.0, -12.0]
    # the largest layout never loses, whichever skeleton the group started from
    fewest = SteeredSampler(flow, SteeringConfig("best-of-n", 3, independent=True), reward=lambda s: [len(x) for x in s])
    assert fewest([large] * 4, steps=4, generator=torch.Generator().manual_seed(0), draw=draw).num_atoms.tolist() == [2] * 4
    with pytest.raises(ValueError, match="independent particles need draw"):
        sampler([small], steps=4)
    # one particle draws nothing: plain sampling again
    one = SteeredSampler(flow, SteeringConfig("best-of-n", 1, independent=True), reward=Atoms())
    assert not one.draws_skeletons
    plain = _plain(flow, [small] * 2, 3)
    assert torch.equal(one([small] * 2, steps=6, generator=torch.Generator().manual_seed(3)).frac, plain.frac)


def test_generate_crystals_hands_independent_particles_its_pool_and_reports_their_groups():
    flow = tiny_flow()
    config = SteeringConfig("best-of-n", 4, independent=True)
    runs = []
    for _ in range(2):
        sampler = Capturing(flow, config, reward=Atoms())
        res = generate_crystals(flow, SKELETONS, 6, steps=4, seed=5, sampler=sampler, retries=0)
        runs.append(res)
        assert sampler.draws == 1
        assert res.space_groups == sampler.returned.symmetry.space_group.tolist()
        assert [c.num_atoms for c in res.crystals] == sampler.returned.num_atoms.tolist()
    assert all(torch.equal(torch.as_tensor(a.frac), torch.as_tensor(b.frac)) for a, b in zip(*(r.crystals for r in runs)))
    # the same seed requests the same skeletons; shared particles keep each one's atom count, independent
    # ones add three more layouts to every group, so under this reward no crystal has fewer atoms
    shared = generate_crystals(flow, SKELETONS, 6, steps=4, seed=5, retries=0,
                               sampler=SteeredSampler(flow, SteeringConfig("best-of-n", 4), reward=Atoms()))
    more = [c.num_atoms for c in runs[0].crystals]
    same = [c.num_atoms for c in shared.crystals]
    assert all(m >= s for m, s in zip(more, same)) and sum(more) > sum(same)


def test_independent_particles_are_best_of_n_only():
    with pytest.raises(InputError, match="applies to best-of-n only") as info:
        SteeringConfig("smc", 2, independent=True)
    assert info.value.parameters == ("independent",)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(refine_top=2), "a refine reward and config.refine_top > 0 go together"),
    (dict(refine_top=0, refine=Density()), "a refine reward and config.refine_top > 0 go together"),
])
def test_refine_needs_both_halves(kwargs, needle):
    refine = kwargs.pop("refine", None)
    with pytest.raises(InputError, match=needle):
        SteeredSampler(tiny_flow(), SteeringConfig("best-of-n", 4, **kwargs), reward=Recording(), refine=refine)
    with pytest.raises(InputError, match="refine_top must be an integer in"):
        SteeringConfig("best-of-n", 2, refine_top=3)


def test_generate_crystals_takes_a_steered_sampler():
    flow = tiny_flow()
    sampler = SteeredSampler(flow, SteeringConfig("smc", 2, (0.5,)), reward=DensityReward(3.0))
    res = generate_crystals(flow, SKELETONS, 5, steps=6, seed=0, sampler=sampler, retries=0)
    assert len(res.crystals) == 5 and len(sampler.chosen_rewards) == 5


def test_property_rewards():
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert VolumeReward(30.0)([s]) == [pytest.approx(2.0)]
    assert DensityReward(float(s.density))([s]) == [pytest.approx(0.0)]
    clash = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    assert VolumeReward(32.0)([clash]) == [pytest.approx(CLASH_PENALTY)]


@pytest.mark.parametrize("vectors", [
    [[3, 0, 0], [0, 3, 0], [3, 3, 0]],  # coplanar: pymatgen's distance search raised LinAlgError
    [[3, 0, 0], [0, 3, 0], [0, 0, float("nan")]],  # non-finite
])
def test_a_degenerate_predicted_cell_is_a_clash_not_an_error(vectors):
    """Steering scores predicted endpoints, whose lattice can be flat (an MP-20 smc run of
    session 11 stopped on one): the reward counts it as a clash instead of raising."""
    from pymatgen.core import Lattice, Structure

    from crystalflow.crystal_tasks.rewards import min_distance

    flat = Structure(Lattice(vectors), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert min_distance(flat) == 0.0
    assert VolumeReward(30.0)([flat])[0] >= CLASH_PENALTY


@pytest.mark.parametrize("kwargs,name", [
    (dict(method="greedy"), "method"), (dict(particles=0), "particles"),
    (dict(resample_at=(0.5, 0.2)), "resample_at"), (dict(resample_at=(1.0,)), "resample_at"),
    (dict(temperature=0.0), "temperature"), (dict(repeat_penalty=-0.1), "repeat_penalty"),
    (dict(repeat_penalty=math.inf), "repeat_penalty"),
])
def test_bad_configs_are_one_line_errors_naming_the_parameter(kwargs, name):
    with pytest.raises(InputError, match=f"^{name} ") as info:
        SteeringConfig(**kwargs)
    assert info.value.parameters == (name,) and "--" not in str(info.value)


@pytest.mark.parametrize("kwargs,message,cli", [
    (dict(steer=None, particles=4), "particles need(s) steer best-of-n or steer smc",
     "--particles need(s) --steer best-of-n or --steer smc"),
    (dict(steer=None, resample_at=(0.5,), temperature=0.2),
     "resample_at, temperature need(s) steer best-of-n or steer smc",
     "--resample-at, --steer-temperature need(s) --steer best-of-n or --steer smc"),
    (dict(steer="best-of-n", temperature=0.2), "resample_at and temperature apply to steer smc only",
     "--resample-at and --steer-temperature apply to --steer smc only"),
    (dict(steer=None, reward_relax_steps=5), "reward_relax_steps need(s) steer best-of-n or steer smc",
     "--reward-relax-steps need(s) --steer best-of-n or --steer smc"),
    (dict(steer="best-of-n", reward_relax_top=2), "reward_relax_top needs reward_relax_steps > 0",
     "--reward-relax-top needs --reward-relax-steps > 0"),
    (dict(steer=None, independent=True), "independent need(s) steer best-of-n or steer smc",
     "--independent-particles need(s) --steer best-of-n or --steer smc"),
    (dict(steer="smc", independent=True), "independent (each particle with its own skeleton) applies to best-of-n "
     "only: smc copies particles onto each other, so a group shares one skeleton",
     "--independent-particles (each particle with its own skeleton) applies to best-of-n only: smc copies "
     "particles onto each other, so a group shares one skeleton"),
    (dict(steer="greedy"), "steer must be one of best-of-n, smc, got 'greedy'",
     "--steer must be one of best-of-n, smc, got 'greedy'"),
])
def test_make_sampler_errors_name_parameters_and_the_cli_its_flags(kwargs, message, cli):
    from crystalflow.cli import flag_message
    from crystalflow.crystal_tasks.steered_generation import make_sampler

    with pytest.raises(InputError) as info:
        make_sampler(None, **kwargs)
    assert str(info.value) == message and flag_message(info.value) == cli


@pytest.mark.parametrize("argv,needle", [
    (["--particles", "4"], "error: --particles need(s) --steer best-of-n or --steer smc\n"),
    (["--steer-temperature", "0.2"], "error: --steer-temperature need(s) --steer best-of-n or --steer smc\n"),
    (["--steer", "best-of-n", "--resample-at", "0.5"],
     "error: --resample-at and --steer-temperature apply to --steer smc only\n"),
    (["--steer", "smc", "--resample-at", "1.5"], "--resample-at"),  # argparse
    (["--steer", "smc", "--resample-at", "0.5", "0.2"],
     "error: --resample-at needs increasing times strictly between 0 and 1, got (0.5, 0.2)\n"),
    (["--steer", "smc", "--particles", "0"], "--particles"),
    (["--reward-relax-steps", "5"], "error: --reward-relax-steps need(s) --steer best-of-n or --steer smc\n"),
    (["--steer", "best-of-n", "--particles", "2", "--reward-relax-steps", "5", "--reward-relax-top", "3"],
     "error: --reward-relax-top must be an integer in [0, --particles = 2], got 3\n"),
    (["--steer", "best-of-n", "--reward-relax-steps", "-1"], "--reward-relax-steps"),  # argparse
    (["--repeat-penalty", "0.1"], "error: --repeat-penalty need(s) --steer best-of-n or --steer smc\n"),
    (["--steer", "smc", "--independent-particles"], "error: --independent-particles (each particle with its own "
     "skeleton) applies to best-of-n only"),
    (["--steer", "best-of-n", "--repeat-penalty", "-1"], "--repeat-penalty"),  # argparse
])
def test_cli_refuses_bad_steering_and_writes_nothing(tiny_checkpoint, tmp_path, capsys, argv, needle):
    out = tmp_path / "x"
    try:
        rc = main(["generate", "--out", str(out), "--checkpoint", str(tiny_checkpoint), *argv])
    except SystemExit as exc:  # argparse type errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and "error:" in err and needle in err, err
    assert not out.exists()


def test_cli_steer_with_the_default_reward_and_relax(tiny_checkpoint, tmp_path, capsys):
    import csv

    out = tmp_path / "g"
    rc = main(["generate", "--space-group", "225", "--num", "2", "--steps", "4", "--steer", "smc",
               "--particles", "2", "--relax", "--relax-steps", "2", "--out", str(out),
               "--checkpoint", str(tiny_checkpoint)])
    text = capsys.readouterr().out
    assert rc == 0 and "reward calls" in text and "relaxed 2 structures" in text
    assert len(list(out.glob("*.cif"))) == 2 and len(list((out / "relaxed").glob("*.cif"))) == 2
    rows = list(csv.DictReader(open(out / "relaxed" / "stability.csv")))
    assert len(rows) == 2 and all(r["chgnet_energy_per_atom"] for r in rows)


def test_cli_steer_with_a_relaxed_reward_reports_its_chgnet_passes(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "g"
    rc = main(["generate", "--space-group", "225", "--num", "1", "--steps", "4", "--steer", "best-of-n",
               "--particles", "2", "--reward-relax-steps", "2", "--out", str(out),
               "--checkpoint", str(tiny_checkpoint)])
    text = capsys.readouterr().out
    assert rc == 0 and "2 reward calls (" in text and "up to 2 FIRE steps each" in text, text
    passes = int(text.split("2 reward calls (")[1].split(" CHGNet passes")[0])
    assert 2 <= passes <= 6  # per particle: up to 2 steps + the start
    assert len(list(out.glob("*.cif"))) == 1


def test_cli_steer_with_a_repeat_penalty_reports_the_repeats(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "g"
    rc = main(["generate", "--space-group", "225", "--num", "2", "--steps", "4", "--steer", "best-of-n",
               "--particles", "2", "--repeat-penalty", "0.1", "--out", str(out), "--checkpoint", str(tiny_checkpoint)])
    text = capsys.readouterr().out
    assert rc == 0 and "repeats of kept crystals passed over (penalty 0.1, " in text, text
    assert len(list(out.glob("*.cif"))) == 2


def test_cli_steer_with_independent_particles_says_so(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "g"
    rc = main(["generate", "--num", "3", "--steps", "4", "--steer", "best-of-n", "--particles", "3",
               "--independent-particles", "--repeat-penalty", "0.1", "--out", str(out),
               "--checkpoint", str(tiny_checkpoint)])
    text = capsys.readouterr().out
    assert rc == 0 and "steering best-of-n: 3 particles (each with its own skeleton);" in text, text
    assert len(list(out.glob("*.cif"))) == 3


def test_make_sampler_builds_the_relaxed_default_reward_and_refuses_it_beside_a_user_reward():
    from crystalflow.crystal_tasks.rewards import HullEnergyReward
    from crystalflow.crystal_tasks.steered_generation import make_sampler

    flow = tiny_flow()
    sampler = make_sampler(flow, "best-of-n", 2, reward_relax_steps=3)
    assert isinstance(sampler.reward, HullEnergyReward) and sampler.reward.relax_steps == 3
    assert sampler.refine is None and sampler.config.refine_top == 0
    two = make_sampler(flow, "best-of-n", 4, reward_relax_steps=3, reward_relax_top=2)
    assert two.reward.relax_steps == 0 and two.refine.relax_steps == 3 and two.config.refine_top == 2
    with pytest.raises(InputError, match="reward_relax_steps sets up the default reward"):
        make_sampler(flow, "best-of-n", 2, reward=DensityReward(5.0), reward_relax_steps=3)


def test_generate_api_steers_with_a_user_reward(tiny_checkpoint):
    from crystalflow.crystal_tasks.generation import generate

    plain = generate(225, 3, steps=4, seed=0, checkpoint=tiny_checkpoint)
    dense = generate(225, 3, steps=4, seed=0, checkpoint=tiny_checkpoint,
                     steer=SteeringConfig("best-of-n", 4), reward=VolumeReward(1.0))
    vol = lambda cs: sum(c.to_structure().volume / c.num_atoms for c in cs)
    assert len(dense) == 3 and vol(dense) <= vol(plain) * 1.5
    with pytest.raises(InputError, match="steer"):
        generate(225, 3, checkpoint=tiny_checkpoint, reward=VolumeReward(1.0))
    with pytest.raises(InputError, match="steer"):
        generate(225, 3, checkpoint=tiny_checkpoint, refine=VolumeReward(1.0))
    # two stages: the best particle of each crystal by volume, of the two densest-first-stage ones
    two = generate(225, 3, steps=4, seed=0, checkpoint=tiny_checkpoint,
                   steer=SteeringConfig("best-of-n", 4, refine_top=2), reward=DensityReward(1.0),
                   refine=VolumeReward(1.0))
    assert len(two) == 3
