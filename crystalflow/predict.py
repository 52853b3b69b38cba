"""Crystal structure prediction from compositions with a trained CSP flow."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from pymatgen.core import Composition, Structure
from tqdm.auto import tqdm

from crystalflow.crystals.batch import CrystalBatch, batch_index
from crystalflow.crystals.crystal import Crystal, write_text_atomic
from crystalflow.crystals.dataset import read_cif_table
from crystalflow.composition import atom_types_for
from crystalflow.csp import CSPFlow
from crystalflow.errors import InputError
from crystalflow.models import Conditions
from crystalflow.pretrained import load_pretrained


def sample_structures(
    flow: CSPFlow, types_list: Sequence[Sequence[int]], *, max_atoms: int | None = None,
    steps: int | None = None, method: str | None = None, seed: int = 0, batch_size: int = 256,
    progress: bool = False, device: str | torch.device = "cpu",
) -> list[Crystal]:
    """Sample one crystal per entry of ``types_list`` (atomic numbers per cell), batched."""
    for types in types_list:
        if max_atoms is not None and len(types) > max_atoms:
            raise InputError(f"{len(types)} atoms is more than this checkpoint supports ({max_atoms})")
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
    checkpoint: str | os.PathLike | None = None, seed: int = 0,
) -> list[Structure]:
    """Predict ``num_samples`` candidate structures of a composition.

    Args:
        composition: a formula such as ``"SrTiO3"`` (taken as written unless a size is given).
        num_atoms / formula_units: cell size (atoms, or reduced formula units Z).
        num_samples: number of independent samples.
        steps / method: ODE steps and solver (defaults: the checkpoint's).
        checkpoint: a path or bundled name; default the bundled MP-20 CSP checkpoint.
        seed: random seed (same seed, same structures).

    Returns:
        pymatgen Structures, one per sample.
    """
    if num_samples < 1:
        raise InputError("--num-samples must be >= 1")
    types = atom_types_for(composition, num_atoms, formula_units)
    flow, ckpt = load_pretrained(checkpoint, task="csp")
    crystals = sample_structures(flow, [types] * num_samples, max_atoms=ckpt.stats.get("max_atoms"),
                                 steps=steps, method=method, seed=seed)
    return [c.to_structure() for c in crystals]


@dataclass(frozen=True)
class BatchPrediction:
    """Summary of a CSV prediction run."""

    written: int
    rows: int
    skipped: int
    out_dir: Path


def predict_from_csv(
    csv_path: str | os.PathLike, out_dir: str | os.PathLike, *, limit: int | None = None,
    num_samples: int = 1, steps: int | None = None, method: str | None = None,
    checkpoint: str | os.PathLike | None = None, seed: int = 0, batch_size: int = 256,
    progress: bool = True,
) -> BatchPrediction:
    """Predict every row of a CSV (``material_id``, ``cif``) from its composition and atom count.

    Writes ``out_dir/<material_id>.cif`` and, when ``num_samples > 1``, also
    ``out_dir/<material_id>_<k>.cif`` for k = 0..K-1. Malformed rows are skipped with a warning.
    """
    if num_samples < 1:
        raise InputError("--num-samples must be >= 1")
    table = read_cif_table(csv_path)
    if limit is not None:
        table = table.iloc[:limit]
    ids: list[str] = []
    types_list: list[list[int]] = []
    skipped = 0
    for mid, cif in zip(table["material_id"], table["cif"]):
        try:
            c = Crystal.from_cif_string(cif, niggli=False, material_id=mid)
        except InputError as exc:
            warnings.warn(f"skipping row {mid}: {exc}")
            skipped += 1
            continue
        ids.append(str(mid))
        types_list.append(sorted(c.atom_types.tolist()))
    flow, ckpt = load_pretrained(checkpoint, task="csp")
    max_atoms = ckpt.stats.get("max_atoms")
    keep = [i for i, t in enumerate(types_list) if max_atoms is None or len(t) <= max_atoms]
    if len(keep) < len(types_list):
        warnings.warn(f"skipping {len(types_list) - len(keep)} rows with more than {max_atoms} atoms")
        skipped += len(types_list) - len(keep)
        ids, types_list = [ids[i] for i in keep], [types_list[i] for i in keep]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for k in range(num_samples):
        crystals = sample_structures(flow, types_list, steps=steps, method=method, seed=seed + k,
                                     batch_size=batch_size, progress=progress)
        for mid, crystal in zip(ids, crystals):
            text = crystal.to_structure().to(fmt="cif")
            if k == 0:
                write_text_atomic(out / f"{mid}.cif", text)
                written += 1
            if num_samples > 1:
                write_text_atomic(out / f"{mid}_{k}.cif", text)
                written += 1
    return BatchPrediction(written=written, rows=len(table), skipped=skipped, out_dir=out)
