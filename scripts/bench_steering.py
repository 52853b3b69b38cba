"""Unsteered vs best-of-N vs SMC steering of the bundled DNG model: stability and S.U.N. after
CHGNet relaxation against the bundled CHGNet hull of MP-20.

    python scripts/bench_steering.py --num 32 --relax-steps 200 \\
        --settings plain best-of-n:8 smc:4:0.5 --train ../shared/data/mp_20/train.csv.gz \\
        --out runs/steering/mp20

A setting is ``plain``, ``plain:two-stage``, ``best-of-n:K`` or ``smc:K:t1[,t2...]`` (K particles,
resampling times). ``plain`` keeps the DNG flow's own positions and lattice, the geometry the steered
settings use (``crystalflow generate --steer`` / ``--geometry dng``): the fair baseline for steering.
``plain:two-stage`` is what ``crystalflow generate`` does without ``--steer`` (``--geometry auto``:
the checkpoint's SG-CSP flow, ``sgcsp_mp_20.pt``, re-generates positions and lattice for the DNG
flow's types). Every setting samples ``--num`` structures with the same seed; each is relaxed as its primitive
cell (pymatgen ``get_primitive_structure(tolerance=0.25)``, as ``bench_dng.py`` evaluates them).
Writes ``OUT/<setting>.csv`` (per structure) and appends one JSON line per setting to
``OUT/results.jsonl``; prints a Markdown table row per setting.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


#: geometry of each plain setting (``load_geometry`` choice); steered settings always use the DNG one
PLAIN_GEOMETRY = {"plain": "dng", "plain:two-stage": "auto"}


def parse_setting(text: str) -> tuple[str | None, int | None, tuple[float, ...] | None]:
    """``plain`` / ``plain:two-stage`` / ``best-of-n:K`` / ``smc:K:t1,t2`` -> (method, particles, times)."""
    parts = text.split(":")
    if parts[0] == "plain":
        if text not in PLAIN_GEOMETRY:
            raise ValueError(f"unknown plain setting {text!r}; one of {', '.join(PLAIN_GEOMETRY)}")
        return None, None, None
    times = tuple(float(x) for x in parts[2].split(",")) if len(parts) > 2 else None
    return parts[0], int(parts[1]), times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--space-group", type=int, default=None)
    ap.add_argument("--elements", default=None)
    ap.add_argument("--settings", nargs="+", default=["plain", "best-of-n:8", "smc:4:0.5"])
    ap.add_argument("--temperature", type=float, default=0.1)
    ap.add_argument("--relax-steps", type=int, default=200)
    ap.add_argument("--reward-relax-steps", type=int, default=None,
                    help="steered settings: reward after N CHGNet FIRE steps (HullEnergyReward relax_steps)")
    ap.add_argument("--reward-relax-top", type=int, default=None,
                    help="with --reward-relax-steps: relax only the M best (static energy) of each group at the end")
    ap.add_argument("--repeat-penalty", type=float, default=None,
                    help="steered settings: penalty (eV/atom) on a final particle matching a kept crystal")
    ap.add_argument("--type-temperature", type=float, default=None,
                    help="override the checkpoint's type temperature (every setting of this call)")
    ap.add_argument("--independent-particles", action="store_true",
                    help="best-of-n settings: every particle but the first draws its own skeleton")
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from crystalflow.crystal_tasks.generation import _load, generate_crystals, parse_elements
    from crystalflow.crystal_tasks.geometry import load_geometry
    from crystalflow.metrics.hull import load_reference_hull
    from crystalflow.metrics.io import load_reference_csv
    from crystalflow.metrics.stability import evaluate_stability, write_stability_csv
    from crystalflow.crystal_tasks.steered_generation import chgnet_passes, make_sampler

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    flow, dist = _load(None, "cpu")
    if args.type_temperature is not None:
        import dataclasses

        flow.config = dataclasses.replace(flow.config, type_temperature=args.type_temperature)
    hull = load_reference_hull()
    steps = args.steps or flow.config.steps
    elements = parse_elements(args.elements)
    for setting in args.settings:
        method, k, times = parse_setting(setting)
        temp = args.temperature if method == "smc" else None
        sampler = make_sampler(flow, method, k, times, temp, progress=False,
                               reward_relax_steps=args.reward_relax_steps if method else None,
                               reward_relax_top=args.reward_relax_top if method else None,
                               repeat_penalty=args.repeat_penalty if method else None,
                               independent=args.independent_particles and method == "best-of-n")
        # as `crystalflow generate`: --geometry auto, which is the DNG geometry under --steer
        geometry = load_geometry(flow, PLAIN_GEOMETRY.get(setting, "auto"), "cpu", steering=sampler is not None)
        t0 = time.perf_counter()
        res = generate_crystals(flow, dist, args.num, space_group=args.space_group, elements=elements,
                                steps=args.steps, seed=args.seed, progress=True, sampler=sampler,
                                batch_size=max(1, 128 // (k or 1)), geometry=geometry)
        t_sample = time.perf_counter() - t0
        structures = [c.to_structure().get_primitive_structure(tolerance=0.25) for c in res.crystals]
        rows = [ch.to_row() for ch in res.checks]
        formulas = {s.composition.reduced_formula for s in structures}
        train = list(load_reference_csv(args.train, formulas=formulas, progress=False).structures)
        t1 = time.perf_counter()
        result = evaluate_stability(structures, hull, names=[f"{i:04d}" for i in range(len(structures))],
                                    train=train, relax_steps=args.relax_steps, progress=True)
        t_eval = time.perf_counter() - t1
        write_stability_csv(result.records, args.out / f"{setting.replace(':', '_')}.csv")
        m = result.metrics
        n = len(rows)
        line = {
            "setting": setting, "num": n, "seed": args.seed, "steps": steps,
            "space_group": args.space_group, "elements": args.elements, "type_temperature": flow.config.type_temperature,
            "reward_calls_per_structure": 0 if sampler is None else sampler.config.reward_calls,
            "network_calls_per_structure": (steps if sampler is None else sampler.config.network_calls(steps))
                                           + (0 if geometry is None else geometry.config.steps),
            "geometry": "dng" if geometry is None else "two-stage",
            "reward_calls_made_per_structure": None if sampler is None else sampler.reward_calls / n,
            "reward_relax_steps": args.reward_relax_steps if sampler is not None else None,
            "reward_relax_top": args.reward_relax_top if sampler is not None else None,
            "repeat_penalty": args.repeat_penalty if sampler is not None else None,
            "independent_particles": None if sampler is None else sampler.config.independent,
            "repeats_avoided": None if sampler is None else sampler.repeats_avoided,
            "chgnet_passes_per_structure": None if sampler is None else chgnet_passes(sampler) / n,
            "resampled": res.resampled, "failed_checks": len(res.failed),
            "converged": sum(bool(r.converged) for r in result.records),
            "mean_kept_reward": (sum(sampler.chosen_rewards) / len(sampler.chosen_rewards)) if sampler else None,
            "structure_valid": sum(bool(r["structure_valid"]) for r in rows) / n,
            "composition_valid": sum(bool(r["composition_valid"]) for r in rows) / n,
            "sample_seconds": round(t_sample, 1), "eval_seconds": round(t_eval, 1),
            **{k2: v for k2, v in m.to_dict().items() if k2 != "hull"},
        }
        with open(args.out / "results.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        print(f"| {setting} | {n} | {line['reward_calls_per_structure']} | {line['network_calls_per_structure']} "
              f"| {line['structure_valid']:.1%} | {line['composition_valid']:.1%} | {m.frac_stable:.1%} "
              f"| {m.frac_metastable:.1%} | {m.unique_rate:.1%} | {m.novel_rate:.1%} | {m.sun_rate:.1%} "
              f"| {m.msun_rate:.1%} | {m.median_e_above_hull:.3f} | {t_sample:.0f} s + {t_eval:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
