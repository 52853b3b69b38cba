"""Building the CHGNet reference hull of MP-20 (read and queried by :mod:`crystalflow.metrics.hull`).

CHGNet static energies (per atom, no corrections) of the MP-20 structures at their DFT geometries,
plus ASE's reference crystal of each element relaxed with CHGNet. The build is resumable: partial
results are saved atomically after every chunk, and a rerun continues from there.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, Iterable

from pymatgen.core import Composition, Structure

from crystalflow.metrics.hull import (
    ELEMENT_RELAX_FMAX,
    ELEMENT_RELAX_STEPS,
    HULL_SPLITS,
    HullEntry,
    HullSpec,
    default_data_dir,
    hull_dir,
    read_hull_entries,
    write_hull_entries,
)

__all__ = ["build_reference_hull", "elemental_reference_structures"]


def elemental_reference_structures(elements: Iterable[str]) -> dict[str, Structure]:
    """ASE's reference crystal (``ase.build.bulk``) of each element that has one."""
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    out = {}
    for symbol in sorted(set(elements)):
        try:
            out[symbol] = AseAtomsAdaptor.get_structure(bulk(symbol))
        except Exception:  # molecular or unsupported reference state
            continue
    return out


def _log_to(log: Callable[[str], None] | None) -> Callable[[str], None]:
    return log or (lambda msg: None)


def build_reference_hull(
    data_dir: str | Path | None = None,
    *,
    out_dir: str | Path | None = None,
    chunk_size: int = 512,
    batch_size: int = 16,
    limit: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Compute and cache the CHGNet reference hull of MP-20 (train + val + test + elements).

    Resumable: results are saved atomically to ``<name>.partial.csv.gz`` after every chunk of
    ``chunk_size`` structures, and a rerun continues from there.

    Args:
        data_dir: folder with ``train/val/test.csv.gz`` (default :func:`default_data_dir`).
        out_dir: where to write the hull (default :func:`hull_dir`).
        chunk_size: structures between two checkpoints.
        batch_size: CHGNet batch size.
        limit: only the first ``limit`` rows of each split (for tests; changes the key).
        progress: show a progress bar.
        log: called with progress messages.

    Returns:
        Path of the hull file.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from crystalflow.metrics.energy import relax, static_energies
    from crystalflow.metrics.io import parse_cif

    say = _log_to(log)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    spec = HullSpec.from_data_dir(data_dir)
    if limit is not None:
        spec = HullSpec(spec.data_files, spec.chgnet_version, spec.model_name, spec.settings + (("limit", str(limit)),))
    out_dir = Path(out_dir) if out_dir is not None else hull_dir()
    final = out_dir / spec.filename()
    if final.is_file():
        say(f"hull already cached: {final}")
        return final
    partial = out_dir / (spec.filename().replace(".csv.gz", ".partial.csv.gz"))
    done: list[HullEntry] = read_hull_entries(partial) if partial.is_file() else []
    done_ids = {e.id for e in done}
    say(f"hull key {spec.key()}: {len(done)} entries already computed")

    rows = []
    for split in HULL_SPLITS:
        table = pd.read_csv(data_dir / f"{split}.csv.gz", usecols=["material_id", "cif"], nrows=limit)
        rows.extend((str(m), c) for m, c in zip(table["material_id"], table["cif"]))
    todo = [(m, c) for m, c in rows if m not in done_ids]
    say(f"{len(rows)} structures, {len(todo)} to compute")
    failed = 0
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), disable=not progress, desc="hull")
    t0 = time.time()
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        structures, ids = [], []
        for mid, cif in chunk:
            try:
                structures.append(parse_cif(cif))
                ids.append(mid)
            except Exception:
                failed += 1
        energies = static_energies(structures, batch_size=batch_size, progress=False)
        for mid, s, e in zip(ids, structures, energies):
            if e is None:
                failed += 1
                continue
            done.append(HullEntry(mid, s.composition.formula.replace(" ", ""), e, "mp_20"))
        write_hull_entries(partial, done)
        bar.update(len(chunk))
        rate = (time.time() - t0) / (start + len(chunk))
        say(f"{len(done)}/{len(rows)} done ({rate * 1000:.0f} ms/structure, {failed} failed)")
    bar.close()

    elements = {el.symbol for e in done for el in Composition(e.formula).elements}
    refs = elemental_reference_structures(elements)
    say(f"relaxing {len(refs)} elemental references")
    for symbol, structure in tqdm(refs.items(), disable=not progress, desc="elements"):
        result = relax(structure, steps=ELEMENT_RELAX_STEPS, fmax=ELEMENT_RELAX_FMAX)
        if result.error is None and math.isfinite(result.energy_per_atom):
            done.append(HullEntry(f"ase-{symbol}", result.structure.composition.formula.replace(" ", ""),
                                  result.energy_per_atom, "ase_bulk"))
    write_hull_entries(final, done)
    meta = spec.to_dict() | {
        "num_entries": len(done),
        "num_failed": failed,
        "built": time.strftime("%Y-%m-%d %H:%M:%S"),
        "note": "CHGNet energies (not DFT); elemental references from ase.build.bulk relaxed with CHGNet",
    }
    final.with_name(final.name.replace(".csv.gz", ".json")).write_text(json.dumps(meta, indent=1) + "\n")
    if partial.is_file():
        partial.unlink()
    say(f"wrote {final} ({len(done)} entries)")
    return final
