"""The ``generate --steer`` / ``--relax`` glue: build a steered sampler from options, relax and
score generated crystals with CHGNet against the bundled hull, and the notes printed about both."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from crystalflow.crystals.crystal import Crystal, write_text_atomic
from crystalflow.errors import InputError
from crystalflow.crystal_tasks.steering import DEFAULT_RESAMPLE_AT, METHODS, SteeredSampler, SteeringConfig

__all__ = ["chgnet_passes", "make_sampler", "relax_generated", "steering_note"]


def make_sampler(flow, steer: str | None, particles: int | None = None,
                 resample_at: Sequence[float] | None = None, temperature: float | None = None,
                 reward=None, progress: bool = True, reward_relax_steps: int | None = None,
                 reward_relax_top: int | None = None, repeat_penalty: float | None = None,
                 independent: bool = False) -> SteeredSampler | None:
    """A :class:`~crystalflow.crystal_tasks.steering.SteeredSampler` for ``steer`` (``None``: plain sampling).

    ``reward_relax_steps`` (with the default reward only): score each particle by its CHGNet energy
    above the hull after that many FIRE steps (:class:`~crystalflow.crystal_tasks.rewards.HullEnergyReward`
    ``relax_steps``) instead of its static energy. With ``reward_relax_top`` M as well, two stages:
    every particle is scored by its static energy and only the M best of each group, at t = 1, by
    the relaxed one (:class:`~crystalflow.crystal_tasks.steering.SteeringConfig` ``refine_top``).
    ``repeat_penalty`` P: a final particle matching a crystal already kept costs ``reward + P``
    (``SteeringConfig.repeat_penalty``). ``independent`` (best-of-n): every particle but the first of
    a group draws its own skeleton (``SteeringConfig.independent``).

    Raises:
        InputError: steering options without ``steer``, ``resample_at`` with ``best-of-n``,
            ``reward_relax_steps`` with a given ``reward``, or invalid values (see
            :class:`~crystalflow.crystal_tasks.steering.SteeringConfig`).
    """
    if reward_relax_steps is not None and reward is not None:
        raise InputError("reward_relax_steps sets up the default reward; give relax_steps to your own reward instead",
                         parameters=("reward_relax_steps", "reward"))
    if reward_relax_top is not None and not reward_relax_steps:
        raise InputError("reward_relax_top needs reward_relax_steps > 0", parameters=("reward_relax_top", "reward_relax_steps"))
    if reward_relax_steps is not None and reward_relax_steps < 0:
        raise InputError(f"reward_relax_steps must be >= 0, got {reward_relax_steps}", parameters=("reward_relax_steps",))
    if steer is None:
        given = [name for name, v in (("particles", particles), ("resample_at", resample_at),
                                      ("temperature", temperature), ("reward_relax_steps", reward_relax_steps),
                                      ("repeat_penalty", repeat_penalty), ("independent", independent or None))
                 if v is not None]
        if given:
            raise InputError(f"{', '.join(given)} need(s) steer best-of-n or steer smc",
                             parameters=(*given, "steer"))
        return None
    if steer not in METHODS:
        raise InputError(f"steer must be one of {', '.join(METHODS)}, got {steer!r}", parameters=("steer",))
    if steer == "best-of-n" and (resample_at is not None or temperature is not None):
        raise InputError("resample_at and temperature apply to steer smc only",
                         parameters=("resample_at", "temperature", "steer"))
    config = SteeringConfig(method=steer, particles=4 if particles is None else particles,
                            resample_at=DEFAULT_RESAMPLE_AT if resample_at is None else tuple(resample_at),
                            temperature=0.1 if temperature is None else temperature,
                            refine_top=reward_relax_top or 0, repeat_penalty=repeat_penalty or 0.0,
                            independent=independent)
    refine = None
    if reward_relax_steps:
        from crystalflow.crystal_tasks.rewards import HullEnergyReward

        if reward_relax_top:
            reward, refine = HullEnergyReward(), HullEnergyReward(relax_steps=reward_relax_steps)
        else:
            reward = HullEnergyReward(relax_steps=reward_relax_steps)
    return SteeredSampler(flow, config, reward=reward, refine=refine, progress=progress)


def chgnet_passes(sampler: SteeredSampler) -> int:
    """CHGNet forward passes the sampler's rewards spent so far (both stages; 0 for rewards that
    do not count them, e.g. a user callable)."""
    return sum(getattr(r, "chgnet_passes", 0) for r in (sampler.reward, sampler.refine) if r is not None)


def steering_note(sampler: SteeredSampler, steps: int) -> str:
    """One line: method, budget actually spent and the mean reward of the kept particles."""
    c = sampler.config
    r = sampler.chosen_rewards
    mean = sum(r) / len(r) if r else float("nan")
    times = f", resampled at t = {', '.join(f'{t:g}' for t in c.resample_at)}" if c.resample_at else ""
    relaxed = max(getattr(r, "relax_steps", 0) for r in (sampler.reward, sampler.refine) if r is not None)
    top = f", the {c.refine_top} best of each group relaxed" if c.refine_top else ""
    chgnet = f" ({chgnet_passes(sampler)} CHGNet passes, up to {relaxed} FIRE steps each{top})" if relaxed else ""
    repeats = (f"; {sampler.repeats_avoided} repeats of kept crystals passed over (penalty "
               f"{c.repeat_penalty:g}, {sampler.memory.comparisons} StructureMatcher fits)") if c.repeat_penalty else ""
    own = " (each with its own skeleton)" if c.independent else ""
    return (f"steering {c.method}: {c.particles} particles{own}{times}; {sampler.reward_calls} reward calls{chgnet}, "
            f"{c.network_calls(steps)} network calls per structure; mean reward of the kept "
            f"particles {mean:.4f}{repeats}")


def relax_generated(crystals: Sequence[Crystal], out: str | os.PathLike, *, steps: int = 500,
                    fmax: float = 0.1, workers: int = 1, progress: bool = True) -> str:
    """Relax ``crystals`` with CHGNet; write the relaxed CIFs and ``stability.csv`` (energies,
    E_hull against the bundled CHGNet hull) to ``out`` (prepared by the caller) and list them in
    its manifest. Returns a one-line summary.

    Each crystal is relaxed as its primitive cell (pymatgen ``get_primitive_structure``, tolerance
    0.25 A, as the DNG benchmark evaluates samples): the same crystal with up to 4x fewer atoms
    than the conventional cell ``generate`` writes, so the relaxation is that much cheaper."""
    from crystalflow.metrics.hull import load_reference_hull
    from crystalflow.metrics.stability import evaluate_stability, write_stability_csv
    from crystalflow.outputs import record_outputs, safe_stems

    out = Path(out)
    structures = [c.to_structure().get_primitive_structure(tolerance=0.25) for c in crystals]
    stems = safe_stems([f"{k:04d}_{s.composition.reduced_formula}" for k, s in enumerate(structures)])
    hull = load_reference_hull()
    result = evaluate_stability(structures, hull, names=stems, relax_steps=steps, fmax=fmax,
                                workers=workers, progress=progress)
    names = []
    for stem, record in zip(stems, result.records):
        if record.structure is not None:
            write_text_atomic(out / f"{stem}.cif", record.structure.to(fmt="cif"))
            names.append(f"{stem}.cif")
    write_stability_csv(result.records, out / "stability.csv")
    record_outputs(out, names + ["stability.csv"])
    m = result.metrics
    return (f"relaxed {m.num_structures} structures with CHGNet ({steps} steps): {m.frac_stable:.1%} on or "
            f"below the hull, {m.frac_metastable:.1%} below 0.1 eV/atom (CHGNet hull, not DFT); "
            f"wrote {len(names)} CIFs and stability.csv to {out}")
