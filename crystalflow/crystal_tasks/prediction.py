"""Crystal structure prediction from compositions with a trained CSP flow."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
from pymatgen.core import Composition, Structure
from tqdm.auto import tqdm

from crystalflow.crystals.batch import CrystalBatch, batch_index
from crystalflow.crystals.crystal import Crystal
from crystalflow.crystals.dataset import SkippedRow, read_cif_table
from crystalflow.crystal_tasks.composition import atom_types_for, check_trained_elements
from crystalflow.crystal_tasks.csp import CSPFlow
from crystalflow.errors import InputError
from crystalflow.models.conditions import Conditions
from crystalflow.outputs import (
    CHECKED_COLUMNS, prepare_output_dir, safe_stems, write_checked, write_samples, write_summary_csv,
)
from crystalflow.pretrained import load_pretrained
from crystalflow.crystal_tasks.wyckoff_requests import MAX_TEMPLATES, templates_for  # noqa: F401 (re-exported)


def check_cell_size(num_atoms: int, max_atoms: int | None) -> None:
    """Refuse a cell larger than the checkpoint supports (``max_atoms``; ``None``: no limit)."""
    if max_atoms is not None and num_atoms > max_atoms:
        raise InputError(f"{num_atoms} atoms is more than this checkpoint supports ({max_atoms})")


def sample_structures(
    flow: CSPFlow, types_list: Sequence[Sequence[int]], *, max_atoms: int | None = None,
    steps: int | None = None, method: str | None = None, seed: int = 0, batch_size: int = 256,
    progress: bool = False, device: str | torch.device = "cpu",
) -> list[Crystal]:
    """Sample one crystal per entry of ``types_list`` (atomic numbers per cell), batched."""
    for types in types_list:
        check_cell_size(len(types), max_atoms)
    gen = torch.Generator(device=device).manual_seed(seed)
    out: list[Crystal] = []
    starts = range(0, len(types_list), batch_size)
    for lo in tqdm(starts, disable=not progress, desc="sampling", unit="batch"):
        chunk = types_list[lo:lo + batch_size]
        num_atoms = torch.tensor([len(t) for t in chunk], dtype=torch.long, device=device)
        cond = Conditions(
            atom_types=torch.tensor([z for t in chunk for z in t], dtype=torch.long, device=device),
            batch=batch_index(num_atoms), num_atoms=num_atoms,
        )
        result: CrystalBatch = flow.sample(cond, steps=steps, method=method, generator=gen)
        out.extend(result.to_crystals())
    return out


def predict(
    composition: str | Composition, *, num_atoms: int | None = None, formula_units: int | None = None,
    num_samples: int = 1, steps: int | None = None, method: str | None = None,
    checkpoint: str | os.PathLike | None = None, seed: int = 0, p1: bool = False,
    config=None, library=None, allow_unseen: bool = False,
) -> list[Structure]:
    """Predict the ``num_samples`` best candidate structures of a composition.

    By default the composition pipeline (:mod:`crystalflow.crystal_tasks.pipeline`: substituted templates of
    the bundled MP-20 library, ranked by CHGNet energy); with ``p1=True`` independent samples of
    the P1 flow alone.

    Args:
        composition: a formula such as ``"SrTiO3"`` (taken as written unless a size is given).
        num_atoms / formula_units: cell size (atoms, or reduced formula units Z).
        num_samples: structures returned, best first (pipeline) or independent samples (P1).
        steps / method: ODE steps and solver of the P1 flow (``p1=True``).
        checkpoint: the P1 flow's checkpoint (default: the bundled MP-20 CSP checkpoint).
        seed: random seed (same seed, same structures).
        p1: the P1 flow alone.
        config: a :class:`~crystalflow.crystal_tasks.pipeline.PipelineConfig` (default settings if ``None``).
        library: a template library or its path (default: the bundled one).
        allow_unseen: with ``p1``, allow elements the checkpoint never saw in training.

    Returns:
        pymatgen Structures.
    """
    if num_samples < 1:
        raise InputError("num_samples must be >= 1", parameters=("num_samples",))
    types = atom_types_for(composition, num_atoms, formula_units)
    if not p1:
        from collections import Counter

        from crystalflow.crystal_tasks.pipeline import PipelineConfig, predict_compositions

        ranked = predict_compositions([dict(Counter(types))], config=config or PipelineConfig(),
                                      num_outputs=num_samples, library=library,
                                      p1_checkpoint=checkpoint, seed=seed, progress=False)
        return [c.structure for c in ranked[0]]
    flow, ckpt = load_pretrained(checkpoint, task="csp")
    check_trained_elements(types, ckpt.stats, allow_unseen=allow_unseen)
    crystals = sample_structures(flow, [types] * num_samples, max_atoms=ckpt.stats.get("max_atoms"),
                                 steps=steps, method=method, seed=seed)
    return [c.to_structure() for c in crystals]


class NoUsableRows(InputError):
    """No row of a CSV can be predicted; ``skipped_rows`` gives each row's reason."""

    def __init__(self, message: str, skipped_rows: tuple[SkippedRow, ...]) -> None:
        super().__init__(message)
        self.skipped_rows = skipped_rows


@dataclass(frozen=True)
class BatchPrediction:
    """Summary of a CSV prediction run: counts, the folder, one summary row per written file
    (:data:`crystalflow.outputs.CHECKED_COLUMNS`, also in ``out_dir/summary.csv``) and the rows
    left out with their reasons (``skipped_rows``; nothing is warned, the caller reports them)."""

    written: int
    rows: int
    out_dir: Path
    summary: tuple[dict, ...] = ()
    skipped_rows: tuple[SkippedRow, ...] = ()

    @property
    def skipped(self) -> int:
        """Number of rows left out."""
        return len(self.skipped_rows)


def predict_from_csv(
    csv_path: str | os.PathLike, out_dir: str | os.PathLike, *, limit: int | None = None,
    num_samples: int = 1, steps: int | None = None, method: str | None = None,
    checkpoint: str | os.PathLike | None = None, seed: int = 0, batch_size: int = 256,
    progress: bool = True, overwrite: bool = False,
) -> BatchPrediction:
    """Predict every row of a CSV (``material_id``, ``cif``) from its composition and atom count.

    Writes ``<material_id>.cif`` (``num_samples == 1``) or ``<material_id>_<k>.cif``, k < K, and
    ``summary.csv`` with each file's check into ``out_dir``, which must be new or empty
    (``overwrite``: :func:`crystalflow.outputs.prepare_output_dir`; checked before sampling).
    Malformed rows and rows larger than the checkpoint's cells are skipped (``skipped_rows`` of
    the result); InputError when no row is left.
    """
    if num_samples < 1:
        raise InputError("num_samples must be >= 1", parameters=("num_samples",))
    table = read_cif_table(csv_path)
    if limit is not None:
        table = table.iloc[:limit]
    flow, ckpt = load_pretrained(checkpoint, task="csp")
    max_atoms = ckpt.stats.get("max_atoms")
    ids: list[str] = []
    types_list: list[list[int]] = []
    skipped: list[SkippedRow] = []
    for mid, cif in zip(table["material_id"], table["cif"]):
        try:
            c = Crystal.from_cif_string(cif, niggli=False, material_id=mid)
        except InputError as exc:
            skipped.append(SkippedRow(str(mid), str(exc)))
            continue
        if max_atoms is not None and c.num_atoms > max_atoms:
            skipped.append(SkippedRow(str(mid), f"{c.num_atoms} atoms, more than this checkpoint "
                                                f"supports ({max_atoms})"))
            continue
        ids.append(str(mid))
        types_list.append(sorted(c.atom_types.tolist()))
    if not ids:
        raise NoUsableRows(f"no row of {csv_path} can be predicted ({len(skipped)} skipped)", tuple(skipped))
    out = prepare_output_dir(out_dir, overwrite=overwrite)

    def structures(k: int) -> Iterator[Structure]:
        crystals = sample_structures(flow, types_list, steps=steps, method=method, seed=seed + k,
                                     batch_size=batch_size, progress=progress)
        return (crystal.to_structure() for crystal in crystals)

    rows = write_samples(out, ids, num_samples, structures, [None] * len(ids))
    return BatchPrediction(written=len(rows), rows=len(table), out_dir=out, summary=tuple(rows),
                           skipped_rows=tuple(skipped))


# -- space-group conditioned prediction (task ``sgcsp``; templates: crystalflow.crystal_tasks.wyckoff_requests) --

def sample_symmetric_structures(
    flow, templates: Sequence, *, steps: int | None = None, method: str | None = None,
    seed: int = 0, batch_size: int = 256, progress: bool = False, device: str | torch.device = "cpu",
) -> list[Structure]:
    """Sample one conventional-cell Structure per Wyckoff template with a space-group flow."""
    gen = torch.Generator(device=device).manual_seed(seed)
    out: list[Structure] = []
    starts = range(0, len(templates), batch_size)
    for lo in tqdm(starts, disable=not progress, desc="sampling", unit="batch"):
        result = flow.sample(list(templates[lo:lo + batch_size]), steps=steps, method=method,
                             generator=gen, device=device)
        out.extend(c.to_structure() for c in result.to_crystals())
    return out


def predict_with_space_group(
    composition: str | Composition, space_group: int, *, wyckoff: str | None = None,
    num_atoms: int | None = None, formula_units: int | None = None, num_samples: int = 1,
    steps: int | None = None, method: str | None = None,
    checkpoint: str | os.PathLike | None = None, seed: int = 0, retries: int = 3,
    allow_unseen: bool = False, candidates: int | None = None, rank_relax_steps: int = 0,
) -> list[Structure]:
    """Predict ``num_samples`` conventional cells of a composition in a given space group.

    Without ``wyckoff`` the compatible Wyckoff templates are enumerated (see
    :func:`templates_for`) and the samples cycle through them. Samples not in the requested
    group (spglib, symprec 0.1) or with atoms closer than 0.5 A are re-sampled, at most
    ``retries`` rounds, from templates that have not failed. Elements the checkpoint never saw
    in training are refused unless ``allow_unseen``. With ``candidates`` K (>= ``num_samples``),
    K samples are drawn (cycling through the templates) and the ``num_samples`` lowest in CHGNet
    energy are returned, best first (:func:`lowest_energy_samples`), each with its static CHGNet
    energy (eV/atom; ``None`` for a sample CHGNet could not evaluate) in
    ``structure.properties["energy_per_atom"]``. ``rank_relax_steps`` N > 0 re-ranks the two best
    by their CHGNet energy after N FIRE steps (:func:`lowest_energy_samples` ``relax_steps``; the
    samples stay unrelaxed; that energy in ``properties["relaxed_energy_per_atom"]``).
    """
    if num_samples < 1:
        raise InputError("num_samples must be >= 1", parameters=("num_samples",))
    check_candidates(candidates, num_samples, rank_relax_steps)
    flow, ckpt = load_pretrained(checkpoint, task="sgcsp")
    check_trained_elements(atom_types_for(composition), ckpt.stats, allow_unseen=allow_unseen)
    max_atoms = ckpt.stats.get("max_atoms")
    templates = templates_for(composition, space_group, wyckoff=wyckoff, max_atoms=max_atoms,
                              num_atoms=num_atoms, formula_units=formula_units)
    too_big = [t for t in templates if max_atoms is not None and t.num_atoms > max_atoms]
    if len(too_big) == len(templates):
        raise InputError(f"{templates[0].num_atoms} atoms in the conventional cell is more than "
                         f"this checkpoint supports ({max_atoms})")
    templates = [t for t in templates if t not in too_big]
    total = num_samples if candidates is None else candidates
    chosen = [templates[i % len(templates)] for i in range(total)]
    structures = sample_symmetric_structures(flow, chosen, steps=steps, method=method, seed=seed)
    structures = _resample_failures(flow, templates, chosen, structures, space_group, retries=retries,
                                    steps=steps, method=method, seed=seed)
    if candidates is None:
        return structures
    kept = lowest_energy_samples([structures], num_samples, requested=[space_group],
                                 relax_steps=rank_relax_steps)[0]
    for c in kept:
        c.structure.properties["energy_per_atom"] = c.energy
        if rank_relax_steps:
            c.structure.properties["relaxed_energy_per_atom"] = c.relaxed_energy
    return [c.structure for c in kept]


def check_candidates(candidates: int | None, num_samples: int, rank_relax_steps: int = 0) -> None:
    """Refuse ``candidates`` (samples drawn per composition) fewer than the ``num_samples`` kept,
    and a relaxed ranking (``rank_relax_steps``) without candidates to rank. Needs no data or
    checkpoint, so ``crystalflow predict`` runs it before anything is read or written.

    Raises:
        InputError: naming the parameters (the CLI shows them as --candidates ...).
    """
    if rank_relax_steps < 0:
        raise InputError(f"rank_relax_steps must be >= 0, got {rank_relax_steps}", parameters=("rank_relax_steps",))
    if rank_relax_steps and candidates is None:
        raise InputError("rank_relax_steps re-ranks candidates: give candidates K too",
                         parameters=("rank_relax_steps", "candidates"))
    if candidates is not None and candidates < num_samples:
        raise InputError(f"candidates ({candidates}) must be at least num_samples ({num_samples})",
                         parameters=("candidates", "num_samples"))


def _resample_failures(flow, templates: Sequence, chosen: list, structures: list[Structure],
                       space_group: int, *, retries: int, steps: int | None, method: str | None,
                       seed: int) -> list[Structure]:
    """Re-sample structures that fail :func:`crystalflow.checks.check_structure` (another spglib
    group, atoms closer than 0.5 A), at most ``retries`` batched rounds. A template whose sample
    failed is not used again while others remain: its realisation may have a higher symmetry
    (e.g. NaCl on Fm-3m's 8c + 4a + 4b is CsCl, Pm-3m, in a smaller cell). What still fails is
    returned as it is; writers check and flag it."""
    from crystalflow.checks import check_structure

    ok = [check_structure(s, space_group).ok for s in structures]
    failed_templates: set = set()
    for r in range(retries):
        redo = [i for i, good in enumerate(ok) if not good]
        if not redo:
            break
        failed_templates |= {chosen[i] for i in redo}
        pool = [t for t in templates if t not in failed_templates] or list(templates)
        for k, i in enumerate(redo):
            chosen[i] = pool[(k + r) % len(pool)]
        new = sample_symmetric_structures(flow, [chosen[i] for i in redo], steps=steps,
                                          method=method, seed=seed + 7919 * (r + 1))
        for i, s in zip(redo, new):
            structures[i] = s
            ok[i] = check_structure(s, space_group).ok
    return structures


def lowest_energy_samples(samples: Sequence[Sequence[Structure]], keep: int, *,
                          requested: Sequence[int | None] | None = None, batch_size: int = 64,
                          progress: bool = False, relax_steps: int = 0, relax_top: int = 2) -> list[list]:
    """Each composition's ``keep`` best samples by CHGNet energy.

    Args:
        samples: per composition, its candidate structures (any number, any cells).
        keep: structures kept per composition (at most its number of samples).
        requested: per composition, the space group asked for (``None``: any); samples spglib
            (symprec 0.1) finds in it go before those it does not, so the energy ranking does not
            trade the requested symmetry for a lower energy.
        relax_steps: with ``> 0``, a second stage: each composition's ``relax_top`` best samples
            (valid, in the requested group, lowest static energy) are ranked again by their CHGNet
            energy after ``relax_steps`` FIRE steps (positions and cell) and go first in that
            order; the sample itself is kept, unrelaxed (the relaxation only ranks).
        relax_top: samples per composition relaxed for the second stage.
    Returns:
        per composition, :class:`~crystalflow.crystal_tasks.candidates.Candidate` objects (source
        ``"flow"``, ``energy`` and ``check`` set) best first: valid ones (atoms >= 0.5 A apart)
        before invalid, in the requested group before outside it (a repeat in the group before a
        different crystal outside it), then by static CHGNet energy per atom as sampled
        (:func:`rank_candidates`, no template vote), different crystals before repeats
        (:func:`distinct_best`). Invalid samples and cells CHGNet cannot evaluate
        are not given to CHGNet and rank last.
    """
    from crystalflow.checks import check_structure
    from crystalflow.crystal_tasks.candidates import Candidate, distinct_best, rank_candidates
    from crystalflow.metrics.energy import static_energies

    if keep < 1:
        raise InputError("keep must be >= 1", parameters=("keep",))
    if relax_steps < 0 or relax_top < 1:
        raise InputError(f"relax_steps must be >= 0 and relax_top >= 1, got {relax_steps} and {relax_top}",
                         parameters=("relax_steps", "relax_top"))
    if requested is None:
        requested = [None] * len(samples)
    if len(requested) != len(samples):
        raise InputError(f"{len(requested)} requested space groups for {len(samples)} compositions",
                         parameters=("requested",))
    cands = []
    for group, sg in zip(samples, requested):
        checks = [check_structure(s, sg) for s in group]
        cands.append([Candidate(s, "flow", min_distance=ch.min_distance, check=ch)
                      for s, ch in zip(group, checks)])
    valid = [c for group in cands for c in group if c.min_distance >= 0.5]
    for c, e in zip(valid, static_energies([c.structure for c in valid], batch_size=batch_size,
                                           progress=progress)):
        c.energy = e
    ranked_groups = [rank_candidates(group, rank="energy", energy_weight=1.0) for group in cands]
    if relax_steps > 0:
        ranked_groups = _relaxed_first(ranked_groups, relax_steps, relax_top, batch_size, progress)
    out = []
    for ranked in ranked_groups:
        best = distinct_best([c for c in ranked if c.check.ok], keep)  # valid and in the group
        out.append(best + distinct_best([c for c in ranked if not c.check.ok], keep - len(best)))
    return out


def _relaxed_first(ranked_groups: list[list], steps: int, top: int, batch_size: int,
                   progress: bool) -> list[list]:
    """Each group's first ``top`` valid, in-group candidates (as ranked) re-ordered by their CHGNet
    energy after ``steps`` FIRE steps, put before the rest (kept in their order)."""
    import math

    from crystalflow.metrics.energy import relax_many

    heads = [[c for c in ranked if c.check.ok and c.energy is not None][:top] for ranked in ranked_groups]
    flat = [c for head in heads for c in head]
    relaxed = relax_many([c.structure for c in flat], steps=steps, batch_size=min(batch_size, 16),
                         progress=progress)
    after = {}
    for c, r in zip(flat, relaxed):
        finite = math.isfinite(r.energy_per_atom)
        c.relaxed_energy = r.energy_per_atom if finite else None
        after[id(c)] = r.energy_per_atom if finite else math.inf
    out = []
    for ranked, head in zip(ranked_groups, heads):
        first = sorted(head, key=lambda c: after[id(c)])  # stable: ties keep the static order
        out.append(first + [c for c in ranked if id(c) not in after])
    return out


def predict_from_csv_with_space_group(
    csv_path: str | os.PathLike, out_dir: str | os.PathLike, *, limit: int | None = None,
    num_samples: int = 1, steps: int | None = None, method: str | None = None,
    checkpoint: str | os.PathLike | None = None, seed: int = 0, batch_size: int = 256,
    progress: bool = True, symprec: float = 0.1, workers: int = 1, overwrite: bool = False,
    candidates: int | None = None, chunk: int = 512, rank_relax_steps: int = 0,
) -> BatchPrediction:
    """Predict every CSV row conditioned on its own space group and Wyckoff template.

    The condition comes from spglib analysis of the row's CIF (``symprec`` 0.1, the ground-truth
    template of the field's benchmark); outputs are conventional cells, named like
    :func:`predict_from_csv`, each checked against its row's space group (summary.csv). Rows
    spglib cannot analyse, or too large for the checkpoint, are skipped (``skipped_rows``).
    ``workers`` processes analyse the rows (the analysis is cached).

    With ``candidates`` K (>= ``num_samples``) each row gets K samples and the ``num_samples``
    lowest in CHGNet energy are written (:func:`lowest_energy_samples`; summary.csv gains
    ``energy_per_atom``), ``chunk`` rows at a time so an interruption keeps the finished chunks.
    Sample k of chunk c uses seed ``seed + c * K + k``, so with one chunk, sample 0 is the
    unranked run's sample 0. ``rank_relax_steps`` N > 0: the two best of each row re-ranked by
    their CHGNet energy after N FIRE steps (:func:`lowest_energy_samples` ``relax_steps``; the
    written samples stay unrelaxed; summary.csv gains ``relaxed_energy_per_atom``).
    """
    from crystalflow.crystals.symmetric import SymmetricDataset

    if num_samples < 1:
        raise InputError("num_samples must be >= 1", parameters=("num_samples",))
    check_candidates(candidates, num_samples, rank_relax_steps)
    if chunk < 1:
        raise InputError("chunk must be >= 1", parameters=("chunk",))
    flow, ckpt = load_pretrained(checkpoint, task="sgcsp")
    # the same analysis as training data (cached on disk by file content, so a second run or a
    # larger limit of an analysed split costs nothing); unanalysable rows come back as skipped_rows
    data = SymmetricDataset.from_csv(csv_path, symprec=symprec, limit=limit, progress=progress,
                                     workers=workers, warn=False)
    max_atoms = ckpt.stats.get("max_atoms")
    ids, templates = [], []
    skipped = list(data.skipped_rows)
    for mid, template in zip(data.material_ids, data.templates):
        if max_atoms is not None and template.num_atoms > max_atoms:
            skipped.append(SkippedRow(str(mid), f"{template.num_atoms} atoms in the conventional cell, "
                                                f"more than this checkpoint supports ({max_atoms})"))
            continue
        ids.append(str(mid))
        templates.append(template)

    if not ids:
        raise NoUsableRows(f"no row of {csv_path} can be predicted ({len(skipped)} skipped)", tuple(skipped))
    out = prepare_output_dir(out_dir, overwrite=overwrite)

    if candidates is None:
        def structures(k: int) -> list[Structure]:
            return sample_symmetric_structures(flow, templates, steps=steps, method=method,
                                               seed=seed + k, batch_size=batch_size, progress=progress)

        rows = write_samples(out, ids, num_samples, structures, [t.space_group for t in templates])
    else:
        rows = _write_lowest_energy(out, ids, templates, flow, num_samples, candidates, chunk,
                                    steps=steps, method=method, seed=seed, batch_size=batch_size,
                                    progress=progress, rank_relax_steps=rank_relax_steps)
    return BatchPrediction(written=len(rows), rows=len(data) + data.skipped, out_dir=out,
                           summary=tuple(rows), skipped_rows=tuple(skipped))


def ranking_columns(rank_relax_steps: int = 0) -> tuple[str, ...]:
    """The summary.csv columns a CHGNet-ranked run adds: ``energy_per_atom`` (static) and, with
    ``rank_relax_steps`` > 0, ``relaxed_energy_per_atom``."""
    return ("energy_per_atom", "relaxed_energy_per_atom") if rank_relax_steps else ("energy_per_atom",)


def energy_cell(energy: float | None) -> float | str:
    """A summary.csv energy cell: eV/atom to 5 decimals, empty when CHGNet gave none."""
    return "" if energy is None else round(energy, 5)


def _write_lowest_energy(out: Path, ids: Sequence[str], templates: Sequence, flow, num_samples: int,
                         candidates: int, chunk: int, *, steps: int | None, method: str | None,
                         seed: int, batch_size: int, progress: bool, rank_relax_steps: int = 0) -> list[dict]:
    """:func:`predict_from_csv_with_space_group` with ``candidates``: per chunk of rows, sample
    ``candidates`` structures per row, write the ``num_samples`` lowest in CHGNet energy and
    rewrite summary.csv; returns the summary rows."""
    stems = safe_stems(ids)
    rows: list[dict] = []
    extra = ranking_columns(rank_relax_steps)
    starts = range(0, len(ids), chunk)
    for c, lo in enumerate(tqdm(starts, disable=not progress or len(starts) == 1, desc="chunks",
                                unit="chunk")):
        part = list(templates[lo:lo + chunk])
        draws = [sample_symmetric_structures(flow, part, steps=steps, method=method,
                                             seed=seed + c * candidates + k, batch_size=batch_size,
                                             progress=progress) for k in range(candidates)]
        best = lowest_energy_samples([list(group) for group in zip(*draws)], num_samples,
                                     requested=[t.space_group for t in part], progress=progress,
                                     relax_steps=rank_relax_steps)
        outputs = [(stem, r, cand.structure, t.space_group)
                   for stem, t, group in zip(stems[lo:lo + chunk], part, best)
                   for r, cand in enumerate(group)]
        kept = [cand for group in best for cand in group]
        written = write_checked(out, outputs, num_samples)
        for row, cand in zip(written, kept):
            for column, energy in zip(extra, (cand.energy, cand.relaxed_energy)):
                row[column] = energy_cell(energy)
        rows += written
        write_summary_csv(out, rows, CHECKED_COLUMNS + extra)
    return rows
