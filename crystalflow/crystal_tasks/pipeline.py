"""Composition -> ranked crystal structures: templates, flows and CHGNet (the default ``predict``).

For every target composition (atom counts of the cell):

1. **Propose** (:func:`crystalflow.templates.propose`): library crystals of the same anonymous
   formula with the target's elements substituted, ranked by chemical distance.
2. **Candidates**, batched over all compositions:
   ``template``: each of the top ``templates`` proposals, volume rescaled;
   ``flow``: space-group flow samples on a proposal's substituted Wyckoff template (from the
   symmetric prior);
   ``template-flow``: the same flow started part-way (``start_time``) from the substituted
   crystal, as DiffCSP++ starts from CSPML templates;
   ``p1``: samples of the P1 flow (the only source, with ``enumerated`` space-group flow samples
   on the likeliest space groups' Wyckoff templates, when the library has no crystal of that
   anonymous formula).
3. **Rank** (``rank="energy"``, the default) by ``energy_weight * E - log(vote + VOTE_FLOOR)``:
   CHGNet energy per atom ``E`` (eV/atom) of the candidate as built, and the log of its
   prototype's similarity-weighted library vote (:class:`~crystalflow.templates.Proposal`), so
   0.1 eV/atom weighs as much as a factor e in votes. On 500 MP-20 validation rows held out of
   the library this beat energy alone (57.4% top-1) and similarity alone (60.4%) with 64.2%
   (templates only; BENCHMARKS.md). ``rank="similarity"`` keeps the proposer's order (no
   CHGNet). ``relax_top`` best candidates are optionally relaxed with CHGNet (FIRE) and
   re-ranked with the relaxed energy.
4. **Check** every returned structure (:func:`crystalflow.checks.check_structure`).

Candidates whose atoms are closer than 0.5 A are never ranked above a valid one.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from pymatgen.core import Element, Structure
from tqdm.auto import tqdm

from crystalflow.crystal_tasks.candidates import SOURCES, VOTE_FLOOR, Candidate, distinct_best, rank_candidates
from crystalflow.checks import check_structure
from crystalflow.errors import InputError
from crystalflow.metrics.validity import min_interatomic_distance
from crystalflow.templates import Proposal, TemplateLibrary, centering, load_library, propose
from crystalflow.templates.proposer import template_label

__all__ = ["PipelineConfig", "Candidate", "rank_candidates", "predict_compositions", "FAST", "SOURCES",
           "VOTE_FLOOR", "distinct_best"]



@dataclass(frozen=True)
class PipelineConfig:
    """Settings of the composition -> structure pipeline (defaults chosen on MP-20 validation
    rows held out of the bundled library; see BENCHMARKS.md).

    Attributes:
        templates: top proposals turned into ``template`` candidates.
        flow_templates: top proposals that also get flow candidates.
        flow_samples: ``flow`` samples (from the prior) per flow template.
        started_samples: ``template-flow`` samples per flow template.
        start_time: ``t0`` of template-started samples.
        p1_samples: ``p1`` samples per composition (also when templates exist).
        fallback_samples: ``p1`` and ``enumerated`` samples per composition without a template.
        fallback_groups: space groups enumerated for a composition without a template.
        steps: ODE steps of the flows (``None``: each checkpoint's default).
        rank: ``"energy"`` (CHGNet energy and prototype vote) or ``"similarity"`` (proposer
            order, no CHGNet).
        energy_weight: nats of vote one eV/atom of CHGNet energy is worth in the ranking.
        relax_top: candidates relaxed with CHGNet after static ranking (0: no relaxation).
        relax_steps / fmax: FIRE step limit and force threshold (eV/A) of the relaxation.
        exact_size: only templates at the target's number of formula units.
        volume_scan: volume factors each candidate's CHGNet energy is evaluated at (the lowest
            is kept, structure rescaled); empty: the volume as built.
        batch_size: crystals per flow batch and per CHGNet batch.
    """

    templates: int = 5
    flow_templates: int = 0
    flow_samples: int = 0
    started_samples: int = 0
    start_time: float = 0.8
    p1_samples: int = 0
    fallback_samples: int = 4
    fallback_groups: int = 3
    steps: int | None = None
    rank: str = "energy"
    energy_weight: float = 10.0
    relax_top: int = 0
    relax_steps: int = 100
    fmax: float = 0.1
    exact_size: bool = False
    volume_scan: tuple[float, ...] = ()
    batch_size: int = 64

    def __post_init__(self) -> None:
        for name in ("templates", "flow_templates", "flow_samples", "started_samples",
                     "p1_samples", "fallback_samples", "fallback_groups", "relax_top"):
            if getattr(self, name) < 0:
                raise InputError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.templates + self.fallback_samples < 1:
            raise InputError("the pipeline needs templates >= 1 or fallback samples >= 1")
        if not 0.0 <= self.start_time < 1.0:
            raise InputError(f"start-time must be in [0, 1), got {self.start_time}")
        if self.rank not in ("energy", "similarity"):
            raise InputError(f"rank must be 'energy' or 'similarity', got {self.rank!r}")
        if self.relax_top and self.rank != "energy":
            raise InputError("relaxation re-ranks by CHGNet energy: use rank='energy'")
        for name in ("relax_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise InputError(f"steps must be >= 1, got {self.steps}")
        if any(not f > 0 for f in self.volume_scan):
            raise InputError(f"volume-scan factors must be > 0, got {self.volume_scan}")
        if not self.energy_weight >= 0:
            raise InputError(f"energy-weight must be >= 0, got {self.energy_weight}")
        if self.fmax <= 0:
            raise InputError(f"fmax must be > 0, got {self.fmax}")


#: the ``--fast`` setting: substituted templates ranked by CHGNet static energy, nothing else
FAST = PipelineConfig(templates=3, fallback_samples=2, fallback_groups=2)


def _primitive(structure: Structure) -> Structure:
    try:
        prim = structure.get_primitive_structure(tolerance=0.1)
        return prim if len(prim) <= len(structure) else structure
    except Exception:
        return structure


def _flow_structures(flow, templates: Sequence, start: list | None, config: PipelineConfig,
                     seed: int, progress: bool, desc: str) -> list[Structure]:
    """Space-group flow samples, one per template (optionally template-started), batched."""
    gen = torch.Generator().manual_seed(seed)
    out: list[Structure] = []
    bs = config.batch_size
    for lo in tqdm(range(0, len(templates), bs), disable=not progress, desc=desc, unit="batch"):
        chunk = list(templates[lo:lo + bs])
        kwargs = {}
        if start is not None:
            part = start[lo:lo + bs]
            kwargs = dict(start={
                "representatives": torch.as_tensor(np.concatenate([p[0] for p in part])),
                "lattice": torch.as_tensor(np.stack([p[1] for p in part])),
            }, start_time=config.start_time)
        result = flow.sample(chunk, steps=config.steps, generator=gen, **kwargs)
        out.extend(c.to_structure() for c in result.to_crystals())
    return out


def _fallback_templates(library: TemplateLibrary, counts: dict[int, int], groups: int,
                        max_atoms: int | None) -> list:
    """Wyckoff templates of the library's likeliest space groups for this number of elements,
    whose primitive cell holds the target's atoms."""
    from crystalflow.crystal_tasks.prediction import templates_for

    n_el = len(counts)
    freq = library.space_group_counts.get(n_el) or library.space_group_counts.get(
        min(library.space_group_counts, key=lambda k: abs(k - n_el)), {})
    formula = "".join(f"{Element.from_Z(z).symbol}{n}" for z, n in counts.items())
    total = sum(counts.values())
    out = []
    for sg, _ in sorted(freq.items(), key=lambda kv: -kv[1]):
        if len(out) >= groups:
            break
        try:
            found = templates_for(formula, sg, max_atoms=max_atoms, limit=64)
        except InputError:
            continue
        found = [t for t in found if t.num_atoms // centering(sg) == total]
        if found:
            out.append(found[0])
    return out


def _energies(cands: list[Candidate], config: PipelineConfig, progress: bool) -> None:
    """CHGNet static energy per atom of every valid candidate (in place), batched. With a
    ``volume_scan`` each candidate is evaluated at those volume factors and keeps the one of
    lowest energy (its structure rescaled isotropically)."""
    from crystalflow.metrics.energy import static_energies

    todo = [c for c in cands if c.min_distance >= 0.5]
    scales = config.volume_scan or (1.0,)
    variants = []
    for c in todo:
        for f in scales:
            s = c.structure.copy()
            if f != 1.0:
                s.scale_lattice(s.volume * f)
            variants.append(s)
    energies = static_energies(variants, batch_size=config.batch_size, progress=progress)
    k = len(scales)
    for j, c in enumerate(todo):
        es = energies[j * k:(j + 1) * k]
        known = [(e, i) for i, e in enumerate(es) if e is not None]
        if not known:
            continue
        e, i = min(known)
        c.energy = e
        if scales[i] != 1.0:
            c.structure = variants[j * k + i]
            c.min_distance = float(min_interatomic_distance(c.structure))


#: heaviest element CHGNet 0.3.0 was trained on (Pu); heavier ones cannot be ranked by energy
CHGNET_MAX_Z = 94


def check_elements(counts: dict[int, int], library: TemplateLibrary, config: PipelineConfig, *,
                   allow_unseen: bool = False) -> None:
    """Refuse a composition the pipeline cannot judge: an element no library crystal contains
    (its substitutions rest on its Mendeleev number alone; ``allow_unseen`` accepts that), or
    one heavier than CHGNet knows when ranking by energy.

    Raises:
        InputError: one line naming the elements and the way out.
    """
    heavy = sorted(z for z in counts if z > CHGNET_MAX_Z)
    if heavy and config.rank == "energy":
        names = ", ".join(Element.from_Z(z).symbol for z in heavy)
        raise InputError(f"CHGNet has no data for {names} (Z > {CHGNET_MAX_Z}); rank by template "
                         "similarity instead (--rank similarity)")
    unseen = sorted(z for z in counts if not float(library.element_volumes[z]) > 0)
    if unseen and not allow_unseen:
        names = ", ".join(Element.from_Z(z).symbol for z in unseen)
        raise InputError(f"no crystal of the template library contains {names}; its predictions "
                         "would rest on its Mendeleev number alone (add --allow-unseen-elements "
                         "to predict anyway)")


def predict_compositions(
    compositions: Sequence[dict[int, int]], *, config: PipelineConfig = PipelineConfig(),
    num_outputs: int = 1, library: TemplateLibrary | str | os.PathLike | None = None,
    sg_checkpoint: str | None = None, p1_checkpoint: str | None = None, seed: int = 0,
    progress: bool = True, keep_all: bool = False, timings: dict[str, float] | None = None,
) -> list[list[Candidate]]:
    """Ranked structures for each composition (``{Z: atoms in the cell}``).

    Args:
        compositions: target cells.
        config: the pipeline's settings.
        num_outputs: structures returned per composition (best first, checked).
        library: a :class:`TemplateLibrary`, a path, or ``None`` for the bundled MP-20 library.
        sg_checkpoint / p1_checkpoint: flows (default: the bundled MP-20 ones).
        seed: seed of every flow sample.
        keep_all: return every ranked candidate (benchmarks), not only ``num_outputs``.
        timings: if given, seconds spent per stage are added to it (``propose``, ``build``,
            ``flows``, ``p1``, ``check``, ``energy``, ``relax``, ``output_check``).

    Returns:
        Per composition, its candidates best first (at least one unless every candidate failed
        to build).
    """
    if num_outputs < 1:
        raise InputError(f"num_outputs must be >= 1, got {num_outputs}", parameters=("num_outputs",))
    lib = library if isinstance(library, TemplateLibrary) else load_library(library)
    clock = _Clock(timings)
    per: list[list[Candidate]] = [[] for _ in compositions]
    proposals: list[list[Proposal]] = []
    for counts in tqdm(compositions, disable=not progress, desc="templates", unit="comp"):
        proposals.append(propose(lib, counts, top=max(config.templates, config.flow_templates),
                                 exact_size=config.exact_size))
    clock("propose")
    # (a) substituted templates
    for i, props in enumerate(proposals):
        for r, p in enumerate(props[:config.templates]):
            try:
                s = p.structure(lib)
            except InputError:
                continue
            per[i].append(Candidate(s, "template", p.label, p.entry.material_id, p.distance, r,
                                    p.vote, p.support, p.same_size))
    clock("build")
    # (b, c) space-group flow on the top proposals; enumerated templates without a library match
    jobs: list[tuple[int, str, object, tuple | None, Proposal | None, int]] = []
    sg_flow = max_sg = None
    need_sg = (config.flow_templates and (config.flow_samples or config.started_samples)) or \
        (config.fallback_samples and any(not p for p in proposals))
    if need_sg:
        from crystalflow.pretrained import load_pretrained  # torch_geometric: only when flows run

        sg_flow, sg_ckpt = load_pretrained(sg_checkpoint, task="sgcsp")
        max_sg = sg_ckpt.stats.get("max_atoms")
    for i, props in enumerate(proposals):
        for r, p in enumerate(props[:config.flow_templates]):
            if max_sg is not None and p.template.num_atoms > max_sg:
                continue
            start = (p.entry.representatives, p.lattice(lib))
            jobs += [(i, "flow", p.template, None, p, r)] * config.flow_samples
            jobs += [(i, "template-flow", p.template, start, p, r)] * config.started_samples
        if not props and config.fallback_samples:
            fb = _fallback_templates(lib, compositions[i], config.fallback_groups, max_sg)
            for k in range(config.fallback_samples):
                if fb:
                    jobs.append((i, "enumerated", fb[k % len(fb)], None, None, 10**6))
    for kind in ("flow", "template-flow", "enumerated"):
        sel = [j for j in jobs if j[1] == kind]
        if not sel:
            continue
        starts = [j[3] for j in sel] if kind == "template-flow" else None
        structures = _flow_structures(sg_flow, [j[2] for j in sel], starts, config, seed,
                                      progress, f"{kind} samples")
        for (i, _, t, _, p, r), s in zip(sel, structures):
            per[i].append(Candidate(s, kind, p.label if p else template_label(t),
                                    p.entry.material_id if p else "",
                                    p.distance if p else None, r, p.vote if p else 0.0,
                                    p.support if p else 0, p.same_size if p else False))
    clock("flows")
    # (d) P1 flow
    p1_jobs = [i for i, props in enumerate(proposals)
               for _ in range(config.p1_samples if props else config.fallback_samples)]
    if p1_jobs:
        from crystalflow.crystal_tasks.prediction import sample_structures
        from crystalflow.pretrained import load_pretrained

        p1_flow, p1_ckpt = load_pretrained(p1_checkpoint, task="csp")
        max_p1 = p1_ckpt.stats.get("max_atoms")
        p1_jobs = [i for i in p1_jobs if max_p1 is None or sum(compositions[i].values()) <= max_p1]
        types = [sorted(z for z, n in compositions[i].items() for _ in range(n)) for i in p1_jobs]
        crystals = sample_structures(p1_flow, types, seed=seed, batch_size=config.batch_size,
                                     progress=progress)
        for i, c in zip(p1_jobs, crystals):
            per[i].append(Candidate(c.to_structure(), "p1"))
    clock("p1")
    # primitive cells, distances, energies, ranking
    flat = [c for cands in per for c in cands]
    for c in tqdm(flat, disable=not progress, desc="checking", unit="cand", leave=False):
        c.structure = _primitive(c.structure)
        c.min_distance = float(min_interatomic_distance(c.structure))
    clock("check")
    if config.rank == "energy":
        _energies(flat, config, progress)
    ranked = [rank_candidates(cands, rank=config.rank, energy_weight=config.energy_weight) for cands in per]
    clock("energy")
    if config.relax_top:
        _relax(ranked, config, progress)
        ranked = [rank_candidates(cands, rank=config.rank, energy_weight=config.energy_weight) for cands in ranked]
    clock("relax")
    out = ranked if keep_all else [distinct_best(cands, num_outputs) for cands in ranked]
    for cands in out:
        for c in cands[:num_outputs]:
            c.check = check_structure(c.structure)
    clock("output_check")
    return out


class _Clock:
    """Adds the seconds since the previous call to ``timings[stage]`` (no-op without a dict)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
        self.last = now


def _relax(ranked: list[list[Candidate]], config: PipelineConfig, progress: bool) -> None:
    """Relax the ``relax_top`` best valid candidates of every composition with CHGNet."""
    from crystalflow.metrics.energy import relax_many

    todo = [c for cands in ranked for c in cands[:config.relax_top] if c.min_distance >= 0.5]
    results = relax_many([c.structure for c in todo], steps=config.relax_steps, fmax=config.fmax,
                         progress=progress)
    for c, res in zip(todo, results):
        if res.error is None and math.isfinite(res.energy_per_atom):
            c.structure = res.structure
            c.relaxed_energy = res.energy_per_atom
            c.min_distance = float(min_interatomic_distance(c.structure))
