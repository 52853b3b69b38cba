"""Cached per-structure properties of a reference split (the "reference profile").

A DNG evaluation compares samples with a reference split (e.g. MP-20 test) and a training split
through densities, numbers of elements, space groups, Wyckoff templates, lattice parameters and
CDVAE fingerprints. Parsing thousands of CIFs and fingerprinting them is slow, so these are computed
once per reference file (keyed by its content, the row limit and the settings) and cached in
:func:`crystalflow.metrics._cache.cache_dir`. When every requested part is cached, the CIFs are not
even parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from pymatgen.core import Structure

from crystalflow.metrics._cache import cached_arrays, file_sha256
from crystalflow.metrics.coverage import Fingerprints, fingerprints
from crystalflow.metrics.symmetry import SYMPREC, SymmetryInfo, symmetry_infos

__all__ = ["ReferenceProfile", "profile_structures", "reference_profile", "template_key"]

#: structures per cached chunk of reference fingerprints
FINGERPRINT_CHUNK = 500


def template_key(info: SymmetryInfo) -> str:
    """A template as text, e.g. ``"225:a,b"``."""
    return f"{info.spacegroup}:{','.join(info.wyckoffs)}"


@dataclass(frozen=True)
class ReferenceProfile:
    """Per-structure properties of a set of structures.

    Attributes:
        densities: g/cm^3.
        num_elements: distinct elements per structure.
        spacegroups: spglib space-group numbers (``symprec`` 0.1).
        templates: Wyckoff templates as text (see :func:`template_key`).
        lattice: ``(n, 6)`` lattice parameters a, b, c (A), alpha, beta, gamma (degrees).
        fingerprints: CDVAE fingerprints, when requested.
    """

    densities: np.ndarray
    num_elements: np.ndarray
    spacegroups: np.ndarray
    templates: np.ndarray
    lattice: np.ndarray
    fingerprints: Fingerprints | None = None

    def __len__(self) -> int:
        return len(self.densities)


def _properties(structures: Sequence[Structure], *, workers: int, progress: bool) -> dict[str, np.ndarray]:
    infos = symmetry_infos(structures, symprec=SYMPREC, workers=workers, progress=progress)
    return {
        "densities": np.array([float(s.density) for s in structures]),
        "num_elements": np.array([len(s.composition.elements) for s in structures]),
        "spacegroups": np.array([i.spacegroup for i in infos], dtype=int),
        "templates": np.array([template_key(i) for i in infos], dtype=str),
        "lattice": np.array([list(s.lattice.abc) + list(s.lattice.angles) for s in structures]).reshape(-1, 6),
    }


def profile_structures(
    structures: Sequence[Structure], *, with_fingerprints: bool = False, workers: int = 1, progress: bool = True
) -> ReferenceProfile:
    """:class:`ReferenceProfile` of in-memory structures (no caching)."""
    props = _properties(structures, workers=workers, progress=progress)
    fps = fingerprints(structures, workers=workers, progress=progress) if with_fingerprints else None
    return ReferenceProfile(**props, fingerprints=fps)


def reference_profile(
    path: str | Path,
    *,
    limit: int | None = None,
    with_fingerprints: bool = False,
    workers: int = 1,
    progress: bool = True,
    use_cache: bool = True,
) -> ReferenceProfile:
    """:class:`ReferenceProfile` of a CDVAE-layout CSV, computed once and cached.

    Raises:
        DataError: the file is missing, malformed or holds an unreadable CIF.
    """
    import matminer

    from crystalflow.metrics.io import load_reference_csv, read_reference_table

    path = Path(path)
    read_reference_table(path, 1)  # validates the file early
    base = {"file": file_sha256(path), "limit": limit}
    parsed: list[Structure] = []

    def structures() -> list[Structure]:
        if not parsed:
            parsed.extend(load_reference_csv(path, limit=limit, workers=workers, progress=progress).structures)
        return parsed

    props = cached_arrays(
        "profile", base | {"symprec": SYMPREC, "v": 1},
        lambda: _properties(structures(), workers=workers, progress=progress), enabled=use_cache,
    )
    fps = None
    if with_fingerprints:
        fp_key = base | {"matminer": getattr(matminer, "__version__", "?"), "fp": "crystalnn-ops-mean+magpie-raw"}

        def all_chunks() -> dict[str, np.ndarray]:
            # chunk by chunk, each chunk cached: an interrupted run resumes where it stopped
            n = len(structures())
            parts = []
            for start in range(0, n, FINGERPRINT_CHUNK):
                chunk = structures()[start : start + FINGERPRINT_CHUNK]
                parts.append(cached_arrays(
                    "fingerprints-part", fp_key | {"start": start, "size": len(chunk)},
                    lambda chunk=chunk: _fp_arrays(fingerprints(chunk, workers=workers, progress=progress)),
                    enabled=use_cache,
                ))
            if not parts:
                return _fp_arrays(fingerprints([], progress=False))
            return {k: np.concatenate([p[k] for p in parts]) for k in ("struct", "comp", "ok")}

        arrays = cached_arrays("fingerprints", fp_key, all_chunks, enabled=use_cache)
        fps = Fingerprints(arrays["struct"], arrays["comp"], arrays["ok"].astype(bool))
    return ReferenceProfile(
        densities=props["densities"], num_elements=props["num_elements"], spacegroups=props["spacegroups"],
        templates=props["templates"], lattice=props["lattice"], fingerprints=fps,
    )


def _fp_arrays(fp: Fingerprints) -> dict[str, np.ndarray]:
    return {"struct": fp.struct, "comp": fp.comp, "ok": fp.ok}
