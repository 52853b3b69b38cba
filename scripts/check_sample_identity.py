"""Fixed-seed samples and losses of the bundled checkpoints, saved once and compared later.

Cases: SG-CSP (MP-20, Perov-5), DNG (MP-20), P1 CSP (MP-20, Perov-5) and the protein backbone
flow, with the checkpoints' default settings and every solver.

Used to check that a refactoring of the flows leaves every bundled checkpoint's output unchanged:

    python scripts/check_sample_identity.py save /tmp/cf_identity.pt     # before
    python scripts/check_sample_identity.py compare /tmp/cf_identity.pt  # after

``compare`` prints the largest absolute difference of every recorded tensor, grouped by
checkpoint, and exits 1 when one exceeds ``--atol`` (default 1e-6).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable

import torch

from crystalflow.crystals.batch import CrystalBatch
from crystalflow.models.conditions import Conditions
from crystalflow.pretrained import load_pretrained
from crystalflow.symmetry import WyckoffTemplate

#: one template per crystal family (free and fixed positions, a basis with a coefficient 2)
TEMPLATES = [
    WyckoffTemplate(1, ("a", "a"), (8, 14)),
    WyckoffTemplate(14, ("e", "a"), (8, 26)),
    WyckoffTemplate(62, ("c", "c", "d"), (20, 6, 8)),
    WyckoffTemplate(139, ("a", "e"), (56, 29)),
    WyckoffTemplate(194, ("h", "c"), (30, 8)),
    WyckoffTemplate(166, ("c", "a"), (83, 52)),
    WyckoffTemplate(225, ("a", "b"), (11, 17)),
    WyckoffTemplate(221, ("a", "b", "c"), (38, 22, 8)),
]
PEROVSKITES = [
    WyckoffTemplate(221, ("a", "b", "c"), (38, 22, 8)),
    WyckoffTemplate(99, ("a", "b", "b", "c"), (56, 22, 8, 8)),
    WyckoffTemplate(123, ("a", "d", "c", "e"), (38, 22, 8, 8)),
    WyckoffTemplate(221, ("b", "a", "d"), (57, 13, 8)),
]

Record = dict[str, torch.Tensor]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch_record(prefix: str, out: CrystalBatch) -> Record:
    return {f"{prefix}.frac": out.frac.double(), f"{prefix}.lattice": out.lattice.double(),
            f"{prefix}.types": out.atom_types.double()}


def _start_of(out: CrystalBatch) -> dict[str, torch.Tensor]:
    """A previous sample as a template start: one representative per orbit and its lattice."""
    sym = out.symmetry
    first = torch.cumsum(sym.orbit_size, 0) - sym.orbit_size
    return {"representatives": out.frac.double().index_select(0, first), "lattice": out.lattice.double()}


def sgcsp_records(name: str, templates: list[WyckoffTemplate]) -> Record:
    """Samples (euler, midpoint, template start, anti-annealing, no symmetrisation) and losses."""
    flow, _ = load_pretrained(name, task="sgcsp")
    rec: Record = {}
    base = flow.sample(templates, generator=_gen(0))  # the checkpoint's default solver and steps
    rec |= _batch_record("default", base)
    rec |= _batch_record("euler20", flow.sample(templates, steps=20, method="euler", generator=_gen(1)))
    rec |= _batch_record("midpoint10", flow.sample(templates, steps=10, method="midpoint", generator=_gen(2)))
    rec |= _batch_record("start", flow.sample(templates, steps=20, generator=_gen(3), start=_start_of(base),
                                              start_time=0.6))
    rec |= _batch_record("anneal", flow.sample(templates, steps=10, generator=_gen(4),
                                               anti_annealing={"frac": 2.0, "lattice": 1.0}))
    rec |= _batch_record("plain", flow.sample(templates, steps=10, generator=_gen(5), symmetrize=False))
    for align in (False, True):
        flow.config = dataclasses.replace(flow.config, align_orbits=align)
        with torch.no_grad():
            loss = flow.loss(base, generator=_gen(6))
        rec[f"loss_align{int(align)}"] = torch.tensor([float(loss.total)] + [loss.parts[k] for k in sorted(loss.parts)],
                                                      dtype=torch.float64)
    return rec


def dng_records() -> Record:
    """DNG samples (default steps and 20 steps, an element restriction) and the loss."""
    loaded, _ = load_pretrained(task="dng")
    flow, dist = loaded if isinstance(loaded, tuple) else (loaded, loaded.skeletons)  # older: (flow, dist)
    skeletons = dist.sample(6, _gen(0))
    rec: Record = {}
    base = flow.sample(skeletons, generator=_gen(1))
    rec |= _batch_record("default", base)
    rec |= _batch_record("steps20", flow.sample(skeletons, steps=20, generator=_gen(2)))
    allowed = torch.zeros(len(skeletons), flow.allowed.shape[0], dtype=torch.bool)
    allowed[:, [8, 12, 14, 26, 56]] = True
    rec |= _batch_record("restricted", flow.sample(skeletons, steps=10, allowed=allowed, generator=_gen(3)))
    with torch.no_grad():
        loss = flow.loss(base, generator=_gen(4))
    rec["loss"] = torch.tensor([float(loss.total)] + [float(loss.parts[k]) for k in sorted(loss.parts)],
                               dtype=torch.float64)
    return rec


def csp_records(name: str, types: list[list[int]]) -> Record:
    """P1 samples with every solver and anti-annealing."""
    flow, _ = load_pretrained(name, task="csp")
    atom_types = torch.tensor([z for row in types for z in row])
    num_atoms = torch.tensor([len(row) for row in types])
    cond = Conditions(atom_types=atom_types, batch=torch.repeat_interleave(torch.arange(len(types)), num_atoms),
                      num_atoms=num_atoms)
    rec: Record = {}
    for i, (method, steps) in enumerate((("euler", 20), ("midpoint", 10), ("rk4", 5))):
        rec |= _batch_record(method, flow.sample(cond, steps=steps, method=method, generator=_gen(i)))
    rec |= _batch_record("anneal", flow.sample(cond, steps=10, generator=_gen(9),
                                               anti_annealing={"frac": 2.0, "lattice": 1.0}))
    return rec


def protein_records() -> Record:
    """Backbone samples of the bundled protein checkpoint (default settings and every solver)."""
    from crystalflow.proteins.pretrained import load_protein_flow

    flow, _ = load_protein_flow()
    rec: Record = {}
    for i, (method, steps) in enumerate((("default", None), ("euler", 10), ("midpoint", 5), ("rk4", 3))):
        frames = flow.sample([20, 30], steps=steps, method=None if method == "default" else method,
                             generator=_gen(i))
        rec[f"{method}.rots"], rec[f"{method}.trans"] = frames.rots.double(), frames.trans.double()
    return rec


CASES: dict[str, Callable[[], Record]] = {
    "sgcsp_mp_20": lambda: sgcsp_records("sgcsp_mp_20.pt", TEMPLATES),
    "sgcsp_perov_5": lambda: sgcsp_records("sgcsp_perov_5.pt", PEROVSKITES),
    "dng_mp_20": dng_records,
    "csp_mp_20": lambda: csp_records("csp_mp_20.pt", [[38, 22, 8, 8, 8], [11, 17], [14, 14, 8, 8, 8, 8]]),
    "csp_perov_5": lambda: csp_records("csp_perov_5.pt", [[38, 22, 8, 8, 8], [56, 40, 8, 8, 8]]),
    "protein_db55": protein_records,
}


def collect(names: list[str]) -> dict[str, Record]:
    torch.set_num_threads(1)  # one thread: reductions in a fixed order
    return {name: CASES[name]() for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["save", "compare"])
    parser.add_argument("file")
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--atol", type=float, default=1e-6)
    args = parser.parse_args(argv)
    records = collect(args.cases)
    if args.mode == "save":
        torch.save(records, args.file)
        print(f"saved {sum(len(r) for r in records.values())} tensors of {list(records)} to {args.file}")
        return 0
    reference = torch.load(args.file)
    worst_all = 0.0
    for name, rec in records.items():
        ref = reference[name]
        if set(ref) != set(rec):
            print(f"{name}: keys differ: {sorted(set(ref) ^ set(rec))}")
            return 1
        diffs = {k: (rec[k] - ref[k]).abs().max().item() if rec[k].numel() else 0.0 for k in ref}
        worst = max(diffs.values())
        worst_all = max(worst_all, worst)
        detail = ", ".join(f"{k} {v:.1e}" for k, v in diffs.items() if v > 0) or "all exactly equal"
        print(f"{name}: max abs diff {worst:.3e} ({detail})")
    return 0 if worst_all <= args.atol else 1


if __name__ == "__main__":
    sys.exit(main())
