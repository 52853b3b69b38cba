"""Reward-steered de-novo generation: best-of-N and Feynman-Kac particle resampling (SMC).

Both methods turn extra sampling compute into samples of lower reward (:mod:`crystalflow.crystal_tasks.rewards`;
default: unrelaxed CHGNet energy above the bundled hull). Every requested crystal gets a *group* of
``K = particles`` particles that share its skeleton (space group + Wyckoff letters), so they share
one symmetry layout and can be copied onto each other:

* ``best-of-n``: sample the K particles independently and keep the one of lowest reward
  (K reward calls per crystal, K x the flow's network evaluations).
* ``smc`` (Feynman-Kac steering, Singhal et al. 2025, with the immediate potential): at each time
  ``t`` in ``resample_at`` predict every particle's endpoint (one extra network call: the
  continuous fields moved by ``(1 - t) v`` along their straight paths and re-projected onto the
  space group, each still-masked orbit given its most probable type), score it with the reward,
  and resample the group's particles with weights ``exp(-reward / temperature)`` (multinomial,
  normalised within the group). A particle's whole state moves with it: Wyckoff parameters,
  lattice and its discrete atom-type tokens (masked ones included). At t = 1 the particle of
  lowest reward is kept, as in best-of-N. Reward calls per crystal:
  ``K * (len(resample_at) + 1)``; network evaluations ``K * (steps + len(resample_at))``.

With ``independent`` (best-of-n only) a group's particles do not share a skeleton: the first is
the requested crystal's and the other ``K - 1`` are drawn afresh from the same skeleton pool
(:func:`crystalflow.crystal_tasks.generation.generate_crystals` hands the sampler its pool's
``draw``), i.e. textbook best-of-N over independent samples. A shared skeleton often fixes the
crystal (e.g. the Heusler skeleton gives the same X2YZ crystal in every particle), so a group
whose best particle repeats a kept crystal has no distinct alternative; independent particles
give the repeat penalty (below) one. (``smc`` copies particles onto each other, which needs one
layout per group.) The reward then also chooses the skeleton. Measured (BENCHMARKS.md, session
21): on MP-20 it raises S.U.N. (two-stage best-of-8, 36.8% -> 45.9%) with picks that lean to
small high-symmetry cells; in a small chemical system the picks repeat its lowest-energy crystal
(Al-Mg-Pd: stable 30% -> 55%, S.U.N. 8.4% -> 4.0%).

Either method can re-rank its final particles in two stages (``refine_top`` M with a ``refine``
reward): the ``M`` particles of each group lowest in the cheap reward are scored again by the
expensive one (e.g. the CHGNet energy after a short relaxation), and the lowest of those is kept;
``M * B`` extra reward calls instead of ``K * B``.

With ``repeat_penalty`` P > 0 the final pick also avoids repeats: groups are settled in order, and a
particle that matches (pymatgen StructureMatcher, the uniqueness test of
:mod:`crystalflow.metrics.novelty`) a crystal already kept by this sampler (in this call or an
earlier one) costs ``reward + P``. In a small chemical system the lowest-energy particle is often
the same known crystal again; the penalty trades it for the group's next-best distinct one
(:mod:`crystalflow.crystal_tasks.repeats`). With two stages the penalty also applies when the
``refine_top`` particles are chosen, so the expensive reward is spent on distinct candidates.

The continuous part of the flow is a deterministic ODE, so copies of one particle diverge only
through the random type jumps of orbits still masked at the resampling time: resampling early
keeps diversity, resampling late exploits the better endpoint predictions.

The hook is :meth:`crystalflow.crystal_tasks.dng.DNGFlow.sample`'s ``steer`` callback (which the shared
:func:`crystalflow.solvers.integrate` loop calls after every step; a returned state replaces the
current one); :class:`SteeredSampler` has ``DNGFlow.sample``'s signature and plugs into
:func:`crystalflow.crystal_tasks.generation.generate_crystals` as its ``sampler``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from crystalflow.crystals.batch import CrystalBatch
from crystalflow.errors import InputError
from crystalflow.crystal_tasks.repeats import RepeatMemory, pick_avoiding_repeats, top_avoiding_repeats
from crystalflow.crystal_tasks.rewards import Reward

__all__ = ["METHODS", "SteeringConfig", "SteeredSampler", "best_in_groups", "gather_particles", "group_weights",
           "predict_endpoint", "resample_indices", "select_crystals", "top_in_groups"]

#: steering methods
METHODS = ("best-of-n", "smc")
#: default resampling times of the particle method
DEFAULT_RESAMPLE_AT = (0.5,)


@dataclass(frozen=True)
class SteeringConfig:
    """How to steer.

    Attributes:
        method: ``best-of-n`` or ``smc``.
        particles: particles per requested crystal (K).
        resample_at: ``smc`` resampling times, strictly inside (0, 1), increasing.
        temperature: of the weights ``exp(-reward / temperature)`` (reward units: eV/atom).
        refine_top: with a ``refine`` reward on the sampler: the particles of each group (the M
            lowest in the reward) scored again by it at t = 1 (0: no second stage).
        repeat_penalty: added (reward units) to the reward of a particle that matches a crystal the
            sampler has already kept, when the final particle (and, with two stages, the
            ``refine_top``) are chosen; 0 (the default): the lowest reward wins, repeats or not.
        independent: (best-of-n only) every particle but a group's first draws its own skeleton
            from the pool instead of sharing the requested one (see the module docstring).
    """

    method: str = "smc"
    particles: int = 4
    resample_at: tuple[float, ...] = DEFAULT_RESAMPLE_AT
    temperature: float = 0.1
    refine_top: int = 0
    repeat_penalty: float = 0.0
    independent: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}",
                             parameters=("method",))
        if int(self.particles) != self.particles or self.particles < 1:
            raise InputError(f"particles must be a positive integer, got {self.particles!r}",
                             parameters=("particles",))
        times = tuple(float(t) for t in self.resample_at)
        if any(not 0.0 < t < 1.0 for t in times) or list(times) != sorted(set(times)):
            raise InputError(f"resample_at needs increasing times strictly between 0 and 1, got {times}",
                             parameters=("resample_at",))
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise InputError(f"temperature must be positive, got {self.temperature!r}",
                             parameters=("temperature",))
        if int(self.refine_top) != self.refine_top or not 0 <= self.refine_top <= self.particles:
            raise InputError(f"refine_top must be an integer in [0, particles = {self.particles}], "
                             f"got {self.refine_top!r}", parameters=("refine_top", "particles"))
        if not (math.isfinite(self.repeat_penalty) and self.repeat_penalty >= 0):
            raise InputError(f"repeat_penalty must be >= 0, got {self.repeat_penalty!r}",
                             parameters=("repeat_penalty",))
        if self.independent and self.method != "best-of-n":
            raise InputError("independent (each particle with its own skeleton) applies to best-of-n only: smc "
                             "copies particles onto each other, so a group shares one skeleton",
                             parameters=("independent",))
        object.__setattr__(self, "resample_at", times if self.method == "smc" else ())

    @property
    def reward_calls(self) -> int:
        """Reward evaluations per requested crystal (the second stage's ``refine_top`` included)."""
        return self.particles * (len(self.resample_at) + 1) + self.refine_top

    def network_calls(self, steps: int) -> int:
        """Network evaluations per requested crystal (``steps`` joint Euler steps)."""
        return self.particles * (steps + len(self.resample_at))


# -- particle bookkeeping (pure functions) -------------------------------------------------------


def group_weights(rewards: torch.Tensor, particles: int, temperature: float) -> torch.Tensor:
    """``[B * K]`` rewards -> ``[B, K]`` weights ``exp(-r / T)`` normalised within each group.

    Non-finite rewards get weight 0; a group whose rewards are all non-finite gets uniform weights.
    """
    r = rewards.double().reshape(-1, particles)
    logits = (-r / temperature).masked_fill(~torch.isfinite(r), float("-inf"))
    dead = torch.isinf(logits).all(-1, keepdim=True)
    logits = torch.where(dead, torch.zeros_like(logits), logits)
    return torch.softmax(logits, -1)


def resample_indices(rewards: torch.Tensor, particles: int, temperature: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Multinomial resampling within groups of ``particles`` consecutive particles.

    Returns:
        ``[B * K]`` long: the particle each slot copies (always one of its own group). With one
        particle per group nothing is drawn (the generator is left untouched, so K = 1 steering
        reproduces plain sampling exactly).
    """
    if particles == 1:
        return torch.arange(rewards.shape[0], dtype=torch.long)
    w = group_weights(rewards, particles, temperature)
    pick = torch.multinomial(w, particles, replacement=True, generator=generator)  # [B, K]
    offsets = torch.arange(w.shape[0], dtype=torch.long)[:, None] * particles
    return (pick + offsets).reshape(-1)


def top_in_groups(rewards: torch.Tensor, particles: int, top: int) -> torch.Tensor:
    """``[B * K]`` rewards -> ``[B * top]`` global indices of each group's ``top`` lowest rewards
    (group by group, lowest first, ties in particle order; ``nan``: worst)."""
    r = rewards.double().reshape(-1, particles)
    r = torch.where(torch.isnan(r), torch.full_like(r, math.inf), r)
    order = r.argsort(dim=-1, stable=True)[:, :top]
    return (order + torch.arange(r.shape[0], dtype=torch.long)[:, None] * particles).reshape(-1)


def best_in_groups(rewards: torch.Tensor, particles: int) -> torch.Tensor:
    """``[B * K]`` rewards -> ``[B]`` global index of each group's lowest reward (``nan``: worst)."""
    return top_in_groups(rewards, particles, 1)


def _element_index(sizes: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """Rows of a PyG-style concatenation (``sizes [B]`` rows per crystal) that make up crystals
    ``src [B']`` in order."""
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    counts = sizes.index_select(0, src)
    owner = torch.repeat_interleave(torch.arange(src.shape[0], device=src.device), counts)
    local = torch.arange(int(counts.sum()), device=src.device) - torch.cat(
        [counts.new_zeros(1), counts.cumsum(0)[:-1]]).index_select(0, owner)
    return starts.index_select(0, src).index_select(0, owner) + local


def gather_particles(state: dict[str, torch.Tensor], sym, src: torch.Tensor) -> dict[str, torch.Tensor]:
    """Copy particle ``src[i]`` into slot ``i`` (slots and sources must have equal layouts).

    Args:
        state: ``frac [N, 3]``, ``lattice [B, 6]``, ``types [M]`` (per orbit).
        sym: the batch's :class:`~crystalflow.symmetry.SymmetryBatch`.
        src: ``[B]`` long source particle of every slot.
    """
    src = src.to(sym.num_atoms.device)
    if not (torch.equal(sym.num_atoms.index_select(0, src), sym.num_atoms)
            and torch.equal(sym.num_orbits.index_select(0, src), sym.num_orbits)):
        raise ValueError("particles can only be copied onto particles of the same layout")
    atoms = _element_index(sym.num_atoms, src)
    orbits = _element_index(sym.num_orbits, src)
    return {"frac": state["frac"].index_select(0, atoms), "lattice": state["lattice"].index_select(0, src),
            "types": state["types"].index_select(0, orbits)}


def select_crystals(batch: CrystalBatch, idx: torch.Tensor, sym) -> CrystalBatch:
    """Crystals ``idx [B']`` of ``batch`` as a batch with layout ``sym`` (theirs, in order)."""
    idx = idx.to(batch.num_atoms.device)
    atoms = _element_index(batch.num_atoms, idx)
    if not torch.equal(batch.num_atoms.index_select(0, idx).cpu(), sym.num_atoms.cpu()):
        raise ValueError("the selected crystals do not have the given layout")
    return CrystalBatch(frac=batch.frac.index_select(0, atoms), lattice=batch.lattice.index_select(0, idx),
                        atom_types=batch.atom_types.index_select(0, atoms), batch=sym.batch,
                        num_atoms=sym.num_atoms, symmetry=sym)


# -- the flow side ------------------------------------------------------------------------------


@torch.no_grad()
def predict_endpoint(ctx, state: dict[str, torch.Tensor], t: float) -> dict[str, torch.Tensor]:
    """One network call: the endpoint a particle is heading to at time ``t``.

    Continuous fields follow straight paths, so ``x_1 ~ exp_x((1 - t) v)``, re-projected onto the
    space group when the flow symmetrises; masked orbits (all orbits with a uniform source) take
    their most probable type.

    Args:
        ctx: the :class:`~crystalflow.crystal_tasks.dng.DNGSampling` of the call.
        state: ``frac [N, 3]``, ``lattice [B, 6]``, ``types [M]``.
    """
    flow = ctx.flow
    tt = torch.tensor(t, dtype=state["frac"].dtype, device=state["frac"].device)
    out = ctx.field(state, tt)
    cont = {k: flow.csp.manifolds[k].expmap(state[k], (1.0 - t) * out.velocities[k]) for k in ("frac", "lattice")}
    if flow.config.symmetrize:
        cont = flow.csp.project(cont, ctx.sym)
    best = out.posteriors["types"].argmax(-1)
    path = flow.type_path
    types = torch.where(state["types"] == path.source.mask_index, best, state["types"]) if path.masked else best
    return {**cont, "types": types}


def structures_of(ctx, state: dict[str, torch.Tensor]) -> list:
    """pymatgen structures of a (predicted) final state."""
    batch = ctx.flow.csp.to_batch(state, state["types"].index_select(0, ctx.sym.orbit), ctx.sym, ctx.dtype)
    return [c.to_structure() for c in batch.to_crystals()]


def _rewards(reward: Reward, structures: Sequence) -> torch.Tensor:
    values = [float(v) for v in reward(structures)]
    if len(values) != len(structures):
        raise ValueError(f"the reward returned {len(values)} values for {len(structures)} structures")
    return torch.tensor(values, dtype=torch.float64)


@dataclass
class SteeredSampler:
    """``DNGFlow.sample`` with reward steering: one crystal (the best particle) per skeleton.

    Attributes:
        flow: the :class:`~crystalflow.crystal_tasks.dng.DNGFlow`.
        config: :class:`SteeringConfig`.
        reward: structures -> costs (default :class:`~crystalflow.crystal_tasks.rewards.HullEnergyReward`).
        refine: the second-stage reward of ``config.refine_top`` (e.g.
            ``HullEnergyReward(relax_steps=10)``); ``None``: one stage.
        progress: show a bar over the reward evaluations of each call.
        draws_skeletons: (read-only) the sampler needs a ``draw`` callable (``config.independent``).
        memory: the crystals kept so far (with ``config.repeat_penalty`` > 0), across calls.
        repeats_avoided: groups whose final pick is not their lowest final reward (that particle
            was passed over as a repeat).
        reward_calls: reward evaluations so far (both stages); chosen_rewards: the final reward of every
            returned crystal, in call order; resampling_ess: mean effective sample size (out of
            K) at each resampling, in call order.
    """

    flow: object
    config: SteeringConfig = SteeringConfig()
    reward: Reward | None = None
    refine: Reward | None = None
    progress: bool = False
    reward_calls: int = field(default=0, init=False)
    chosen_rewards: list[float] = field(default_factory=list, init=False)
    resampling_ess: list[float] = field(default_factory=list, init=False)
    memory: RepeatMemory = field(default_factory=RepeatMemory, init=False)
    repeats_avoided: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.reward is None:
            from crystalflow.crystal_tasks.rewards import HullEnergyReward

            self.reward = HullEnergyReward()
        if (self.refine is None) != (self.config.refine_top == 0):
            raise InputError("a refine reward and config.refine_top > 0 go together",
                             parameters=("refine", "refine_top"))

    @property
    def draws_skeletons(self) -> bool:
        """Does a call need ``draw`` (independent particles with K > 1)?"""
        return self.config.independent and self.config.particles > 1

    def _particles(self, skeletons: Sequence, num_elements: torch.Tensor | None,
                   draw) -> tuple[list, torch.Tensor | None]:
        """The ``B * K`` particles' skeletons (group by group) and element budgets."""
        k = self.config.particles
        if not self.draws_skeletons:
            budgets = None if num_elements is None else torch.as_tensor(num_elements).repeat_interleave(k, 0)
            return [s for s in skeletons for _ in range(k)], budgets
        if draw is None:
            raise ValueError("independent particles need draw(n) -> (skeletons, element budgets or None); "
                             "generate_crystals passes its skeleton pool's")
        extra, extra_budgets = draw(len(skeletons) * (k - 1))
        if len(extra) != len(skeletons) * (k - 1):
            raise ValueError(f"draw returned {len(extra)} skeletons for {len(skeletons) * (k - 1)}")
        expanded = [s for b, first in enumerate(skeletons) for s in (first, *extra[b * (k - 1):(b + 1) * (k - 1)])]
        if num_elements is None:
            return expanded, None
        if extra_budgets is None:
            raise ValueError("draw returned no element budgets but the call has num_elements")
        first = torch.as_tensor(num_elements).reshape(-1, 1)
        rest = torch.as_tensor(extra_budgets).reshape(len(skeletons), k - 1).to(first.dtype)
        return expanded, torch.cat([first, rest], 1).reshape(-1)

    def _score(self, structures: Sequence, reward: Reward | None = None) -> torch.Tensor:
        self.reward_calls += len(structures)
        return _rewards(self.reward if reward is None else reward, structures)

    def _refined(self, structures: Sequence, rewards: torch.Tensor) -> torch.Tensor:
        """``[B * K]`` first-stage rewards -> the same with each group's ``refine_top`` lowest
        re-scored by ``refine`` and every other particle at ``inf`` (so one of those is kept); with
        a repeat penalty, lowest in the penalised first-stage reward (against the crystals kept
        before this call)."""
        c = self.config
        top = (top_avoiding_repeats(rewards, structures, c.particles, c.refine_top, c.repeat_penalty, self.memory)
               if c.repeat_penalty > 0 else top_in_groups(rewards, c.particles, c.refine_top))
        out = torch.full_like(rewards, math.inf)
        out[top] = self._score([structures[i] for i in top.tolist()], self.refine)
        return out

    def _steer(self, bar):
        """The ``steer`` hook: resample at the configured times (each once)."""
        pending = list(self.config.resample_at)
        k, temp = self.config.particles, self.config.temperature

        def hook(state: dict, t: float, ctx) -> dict | None:
            if not pending or t < pending[0] - 1e-9:
                return None
            while pending and t >= pending[0] - 1e-9:
                pending.pop(0)
            rewards = self._score(structures_of(ctx, predict_endpoint(ctx, state, t)))
            w = group_weights(rewards, k, temp)
            self.resampling_ess.append(float((1.0 / (w ** 2).sum(-1)).mean()))
            bar.update(1)
            return gather_particles(state, ctx.sym, resample_indices(rewards, k, temp, self._generator))

        return hook

    def __call__(self, skeletons: Sequence, *, allowed: torch.Tensor | None = None, steps: int | None = None,
                 generator: torch.Generator | None = None, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, num_elements: torch.Tensor | None = None,
                 draw=None) -> CrystalBatch:
        """``DNGFlow.sample``'s arguments, plus ``draw(n) -> (n skeletons, [n] element budgets or
        None)`` of the skeleton pool (needed when :attr:`draws_skeletons`). Returns one crystal per
        group, with the layout of the particle kept (its own skeleton when independent)."""
        from tqdm.auto import tqdm

        from crystalflow.symmetry import collate_symmetry, crystal_symmetry

        k = self.config.particles
        expanded, budget_k = self._particles(skeletons, num_elements, draw)
        allowed_k = None if allowed is None else allowed.repeat_interleave(k, 0)
        self._generator = generator
        stages = len(self.config.resample_at) + 1
        with tqdm(total=stages, disable=not self.progress, desc=f"steering ({self.config.method}, K={k})",
                  leave=False) as bar:
            steer = self._steer(bar) if self.config.resample_at else None
            full = self.flow.sample(expanded, allowed=allowed_k, steps=steps, generator=generator,
                                    dtype=dtype, device=device, steer=steer, num_elements=budget_k)
            structures = [c.to_structure() for c in full.to_crystals()]
            rewards = self._score(structures)
            if self.refine is not None:
                rewards = self._refined(structures, rewards)
            bar.update(1)
        best = best_in_groups(rewards, k)
        if self.config.repeat_penalty > 0:
            avoiding = pick_avoiding_repeats(rewards, structures, k, self.config.repeat_penalty, self.memory)
            self.repeats_avoided += int((avoiding != best).sum())
            best = avoiding
        self.chosen_rewards.extend(rewards.index_select(0, best).tolist())
        sym = collate_symmetry([crystal_symmetry(expanded[i].template()) for i in best.tolist()]).to(device)
        return select_crystals(full, best, sym)
