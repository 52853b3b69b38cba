"""The reference convex hull for energy-above-hull, computed with CHGNet (not DFT).

The hull is built with the *same* energy model as the samples it judges: CHGNet static energies
(per atom, no MP2020 corrections) of the MP-20 structures (train + val + test, at their DFT
geometries) plus elemental references (ASE's reference crystal of each element, relaxed with
CHGNet). Energy above hull follows pymatgen's ``PhaseDiagram.get_decomp_and_e_above_hull``
(Ong et al., Chem. Mater. 2008), restricted to the chemical system of the structure.

The hull is cached as a small gzip CSV (``id, formula, energy_per_atom, source``) in
``crystalflow/data/hull/`` (or ``$CRYSTALFLOW_HULL_DIR``), named by a hash of its inputs (data files, CHGNet
version and weights, settings) with a JSON side-car describing them. This module reads, writes and
queries that file; :mod:`crystalflow.metrics.hull_build` computes it (resumably, with CHGNet).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from pymatgen.core import Composition

from crystalflow.cache import file_sha256
from crystalflow.errors import DataError

__all__ = [
    "HULL_SPLITS",
    "EHull",
    "HullEntry",
    "HullSpec",
    "ReferenceHull",
    "default_data_dir",
    "hull_dir",
    "load_reference_hull",
    "read_hull_entries",
    "write_hull_entries",
]

#: MP-20 splits that make up the reference hull
HULL_SPLITS = ("train", "val", "test")
#: bumped whenever the way the hull is computed changes (part of the cache key)
HULL_FORMAT = 1
#: relaxation of the elemental references
ELEMENT_RELAX_STEPS = 300
ELEMENT_RELAX_FMAX = 0.05


def hull_dir() -> Path:
    """Directory of cached hulls: ``$CRYSTALFLOW_HULL_DIR`` or the package's ``data/hull``
    (shipped inside the package so a non-editable install finds the bundled hull)."""
    env = os.environ.get("CRYSTALFLOW_HULL_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "data" / "hull"


def default_data_dir() -> Path:
    """MP-20 directory under the benchmark data root (``$CRYSTALFLOW_DATA``).

    Raises:
        DataError: ``$CRYSTALFLOW_DATA`` is not set or is not a directory.
    """
    from crystalflow.crystals.dataset import resolve_data_dir

    return resolve_data_dir(None) / "mp_20"


@dataclass(frozen=True)
class HullSpec:
    """Everything a reference hull depends on; its :meth:`key` names the cached file.

    Attributes:
        data_files: ``(file name, sha256)`` of each input CSV.
        chgnet_version: CHGNet package version.
        model_name: CHGNet weights.
        settings: other settings (format version, elemental-reference relaxation).
    """

    data_files: tuple[tuple[str, str], ...]
    chgnet_version: str
    model_name: str
    settings: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_data_dir(cls, data_dir: str | Path, splits: Sequence[str] = HULL_SPLITS) -> "HullSpec":
        """Spec of a hull over ``<data_dir>/<split>.csv.gz`` with the installed CHGNet.

        Raises:
            DataError: a split file is missing.
        """
        from crystalflow.metrics.energy import CHGNET_MODEL, chgnet_version

        data_dir = Path(data_dir)
        files = []
        for split in splits:
            path = data_dir / f"{split}.csv.gz"
            if not path.is_file():
                raise DataError(f"hull input {path} does not exist")
            files.append((f"{data_dir.name}/{path.name}", file_sha256(path)))
        settings = (
            ("format", str(HULL_FORMAT)),
            ("energies", "chgnet static, eV/atom, no corrections"),
            ("elements", f"ase bulk, chgnet relax fmax={ELEMENT_RELAX_FMAX} steps={ELEMENT_RELAX_STEPS}"),
        )
        return cls(tuple(files), chgnet_version(), CHGNET_MODEL, settings)

    def key(self) -> str:
        """First 12 hex digits of the SHA-256 of the spec."""
        text = json.dumps(
            [self.data_files, self.chgnet_version, self.model_name, self.settings], sort_keys=True
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def filename(self) -> str:
        """Name of the cached hull file."""
        return f"chgnet-hull-{self.key()}.csv.gz"

    def to_dict(self) -> dict:
        return {
            "key": self.key(),
            "data_files": [list(f) for f in self.data_files],
            "chgnet_version": self.chgnet_version,
            "model_name": self.model_name,
            "settings": dict(self.settings),
        }


@dataclass(frozen=True)
class HullEntry:
    """One reference energy: ``energy_per_atom`` (eV/atom) of ``formula``."""

    id: str
    formula: str
    energy_per_atom: float
    source: str = "mp_20"


@dataclass(frozen=True)
class EHull:
    """Energy above hull of one structure.

    Attributes:
        e_above_hull: eV/atom above the CHGNet hull (negative: below it, i.e. a new ground state);
            ``nan`` when the hull lacks an element of the structure.
        decomposition: reduced formulas of the hull phases it decomposes into.
    """

    e_above_hull: float
    decomposition: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReferenceHull:
    """A set of reference energies and the convex hulls of their chemical systems.

    Attributes:
        entries: the reference energies.
        description: provenance printed next to every E_hull figure.
    """

    entries: tuple[HullEntry, ...] = field(repr=False)
    description: str = "CHGNet hull"

    @functools.cached_property
    def _by_element_set(self) -> dict[frozenset[str], list]:
        from pymatgen.analysis.phase_diagram import PDEntry

        groups: dict[frozenset[str], list] = {}
        for e in self.entries:
            comp = Composition(e.formula)
            entry = PDEntry(comp, e.energy_per_atom * comp.num_atoms, name=e.formula, attribute=e.id)
            groups.setdefault(frozenset(el.symbol for el in comp.elements), []).append(entry)
        return groups

    @functools.cached_property
    def elements(self) -> frozenset[str]:
        """Elements with an elemental reference energy."""
        return frozenset(next(iter(k)) for k in self._by_element_set if len(k) == 1)

    @functools.cached_property
    def _diagrams(self) -> dict:
        return {}

    def phase_diagram(self, chemsys: frozenset[str]):
        """pymatgen ``PhaseDiagram`` of the entries within a chemical system (cached)."""
        from pymatgen.analysis.phase_diagram import PhaseDiagram

        chemsys = frozenset(chemsys)
        if chemsys not in self._diagrams:
            entries = [e for k, group in self._by_element_set.items() if k <= chemsys for e in group]
            self._diagrams[chemsys] = PhaseDiagram(entries)
        return self._diagrams[chemsys]

    def e_above_hull(self, composition: Composition | str, energy_per_atom: float) -> EHull:
        """Energy above the hull of a phase of this composition and energy (eV/atom).

        Negative values (the phase lies below the reference hull) are kept, as FlowMM and
        MatterGen do before counting E_hull < 0 as "stable".
        """
        from pymatgen.analysis.phase_diagram import PDEntry

        comp = Composition(composition)
        chemsys = frozenset(el.symbol for el in comp.elements)
        if not math.isfinite(energy_per_atom) or not chemsys or not chemsys <= self.elements:
            return EHull(float("nan"))
        pd = self.phase_diagram(chemsys)
        entry = PDEntry(comp, energy_per_atom * comp.num_atoms)
        decomp, ehull = pd.get_decomp_and_e_above_hull(entry, allow_negative=True)
        names = tuple(sorted(d.composition.reduced_formula for d in decomp))
        return EHull(float(ehull), names)

    @classmethod
    def from_entries(cls, entries: Iterable[HullEntry], description: str = "CHGNet hull") -> "ReferenceHull":
        return cls(tuple(entries), description)


# ----------------------------------------------------------------------------------- file io
_COLUMNS = ("id", "formula", "energy_per_atom", "source")


def write_hull_entries(path: Path, entries: Sequence[HullEntry]) -> None:
    """Write a hull file (gzip CSV) via a temporary file and an atomic rename."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(_COLUMNS)
    for e in entries:
        writer.writerow((e.id, e.formula, f"{float(e.energy_per_atom):.6f}", e.source))
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with gzip.open(tmp, "wt", compresslevel=9) as f:
        f.write(buf.getvalue())
    os.replace(tmp, path)


def read_hull_entries(path: str | Path) -> list[HullEntry]:
    """Entries of a hull file written by :func:`write_hull_entries`.

    Raises:
        DataError: the file is missing or malformed.
    """
    import csv

    path = Path(path)
    if not path.is_file():
        raise DataError(f"hull file {path} does not exist")
    try:
        with gzip.open(path, "rt") as f:
            rows = list(csv.DictReader(f))
        return [HullEntry(r["id"], r["formula"], float(r["energy_per_atom"]), r.get("source") or "") for r in rows]
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise DataError(f"hull file {path} is unreadable: {exc}") from exc


def _description(meta: dict) -> str:
    files = ", ".join(f for f, _ in meta.get("data_files", []))
    return (
        f"CHGNet {meta.get('model_name', '?')} hull (chgnet {meta.get('chgnet_version', '?')}; "
        f"{meta.get('num_entries', '?')} entries from {files or '?'} + elemental references; "
        "NOT a DFT hull)"
    )


def load_reference_hull(path: str | Path | None = None, *, data_dir: str | Path | None = None) -> ReferenceHull:
    """The cached CHGNet reference hull.

    Args:
        path: an explicit hull file; otherwise the file keyed by the inputs in ``data_dir``
            (default :func:`default_data_dir`). When no data directory is given or set, or it
            does not exist, the newest hull in :func:`hull_dir` is used (e.g. the bundled one).

    Raises:
        DataError: no hull is cached for these inputs (build it with
            ``crystalflow evaluate build-hull``), or the file is unreadable.
    """
    if path is None:
        directory = hull_dir()
        if data_dir is None:
            try:
                data_dir = default_data_dir()
            except DataError:  # no data root set: fall back to the newest cached hull
                pass
        if data_dir is not None and Path(data_dir).is_dir():
            data_dir = Path(data_dir)
            spec = HullSpec.from_data_dir(data_dir)
            path = directory / spec.filename()
            if not path.is_file():
                raise DataError(
                    f"no CHGNet reference hull cached for the inputs in {data_dir} (key {spec.key()}, "
                    f"looked for {path}); build it with: crystalflow evaluate build-hull --data-dir {data_dir}"
                )
        else:
            candidates = sorted(directory.glob("chgnet-hull-*.csv.gz"), key=lambda p: p.stat().st_mtime)
            if not candidates:
                raise DataError(
                    f"no CHGNet reference hull in {directory}; build it with: "
                    "crystalflow evaluate build-hull --data-dir DIR"
                )
            path = candidates[-1]
    path = Path(path)
    meta_path = path.with_name(path.name.replace(".csv.gz", ".json"))
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return ReferenceHull.from_entries(read_hull_entries(path), _description(meta) if meta else f"CHGNet hull {path.name}")
