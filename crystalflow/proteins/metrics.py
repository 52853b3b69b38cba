"""Backbone quality metrics that need no learned model weights.

Per set of chains (CA positions are enough for all of them):

* consecutive CA-CA distances: mean, standard deviation, fraction in ``[3.6, 4.0]`` A;
* clashes: CA pairs at sequence separation >= ``CLASH_MIN_SEP`` closer than ``CLASH_DISTANCE``;
  reported as the fraction of chains with any clash and clashes per 100 residues;
* radius of gyration (CA) and its ratio to ``2.2 L^0.38`` A, the empirical Rg of compact globular
  proteins of length L (Skolnick et al. 2005);
* secondary structure fractions from P-SEA (CA only; biotite's ``annotate_sse``);
* diversity: mean pairwise TM-score between chains of the set (TM-align through ``tmtools``;
  lower is more diverse). Missing ``tmtools`` makes it NaN rather than failing;
* Ramachandran favoured / allowed fractions of the (phi, psi) pairs (needs N, CA, C; NaN for CA
  traces), see :mod:`crystalflow.proteins.ramachandran`;
* novelty (optional, given reference chains such as the training segments): for each chain the
  highest TM-score against the references, normalised by the chain's own length; reported as
  the mean over chains (lower = more novel).
"""

from __future__ import annotations

import math
import os
import random
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from crystalflow.errors import DataError, InputError
from crystalflow.proteins.ramachandran import ramachandran_fractions

CA_CA_RANGE = (3.6, 4.0)
CLASH_DISTANCE = 3.0
CLASH_MIN_SEP = 2


def _ca(chain: torch.Tensor) -> np.ndarray:
    """``[L, 4, 3]`` backbone or ``[L, 3]`` CA -> ``[L, 3]`` float64 CA array."""
    x = chain.detach().cpu().double()
    return (x[:, 1] if x.ndim == 3 else x).numpy()


def ca_ca_distances(ca: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[L, 3] -> [L - 1]`` consecutive CA-CA distances."""
    ca = np.asarray(ca, dtype=np.float64)
    return np.linalg.norm(ca[1:] - ca[:-1], axis=-1)


def ca_ca_in_range(ca: torch.Tensor | np.ndarray, lo: float = CA_CA_RANGE[0],
                   hi: float = CA_CA_RANGE[1]) -> float:
    """Fraction of consecutive CA-CA distances within ``[lo, hi]``."""
    d = ca_ca_distances(ca.detach().cpu().numpy() if isinstance(ca, torch.Tensor) else ca)
    return float(((d >= lo) & (d <= hi)).mean()) if d.size else float("nan")


def clash_count(ca: np.ndarray, distance: float = CLASH_DISTANCE, min_sep: int = CLASH_MIN_SEP) -> int:
    """CA pairs with ``|i - j| >= min_sep`` closer than ``distance``."""
    d = np.linalg.norm(ca[:, None] - ca[None], axis=-1)
    i, j = np.triu_indices(len(ca), k=min_sep)
    return int((d[i, j] < distance).sum())


def radius_of_gyration(ca: np.ndarray) -> float:
    """CA radius of gyration (A)."""
    return float(np.sqrt(((ca - ca.mean(0)) ** 2).sum(-1).mean()))


def compact_rg(length: int) -> float:
    """``2.2 L^0.38`` A: the radius of gyration of a compact globular protein of L residues."""
    return 2.2 * length**0.38


def sse_fractions(ca: np.ndarray) -> tuple[float, float, float]:
    """``(helix, strand, coil)`` fractions from P-SEA on CA atoms."""
    import biotite.structure as struc

    arr = struc.AtomArray(len(ca))
    arr.coord = ca.astype(np.float32)
    arr.atom_name = np.full(len(ca), "CA")
    arr.element = np.full(len(ca), "C")
    arr.res_id = np.arange(1, len(ca) + 1)
    arr.res_name = np.full(len(ca), "GLY")
    arr.chain_id = np.full(len(ca), "A")
    sse = struc.annotate_sse(arr)
    n = max(1, len(sse))
    return float((sse == "a").sum() / n), float((sse == "b").sum() / n), float((sse == "c").sum() / n)


def tm_score(a: np.ndarray, b: np.ndarray) -> float:
    """TM-score of CA sets ``a`` and ``b`` (TM-align), averaged over both normalisations."""
    import tmtools

    r = tmtools.tm_align(a.astype(np.float64), b.astype(np.float64), "G" * len(a), "G" * len(b))
    return 0.5 * (float(r.tm_norm_chain1) + float(r.tm_norm_chain2))


def pairwise_tm(cas: Sequence[np.ndarray], max_pairs: int = 2000, seed: int = 0) -> float:
    """Mean TM-score over (up to ``max_pairs`` random) distinct pairs; NaN without tmtools."""
    try:
        import tmtools  # noqa: F401
    except ImportError:
        return float("nan")
    pairs = [(i, j) for i in range(len(cas)) for j in range(i + 1, len(cas))]
    if not pairs:
        return float("nan")
    if len(pairs) > max_pairs:
        pairs = random.Random(seed).sample(pairs, max_pairs)
    return float(np.mean([tm_score(cas[i], cas[j]) for i, j in pairs]))


def max_tm_to_references(ca: np.ndarray, refs: Sequence[np.ndarray]) -> float:
    """Highest TM-score of CA trace ``ca [L, 3]`` against each of ``refs`` (``[L_k, 3]``),
    normalised by ``L`` (TM-align); NaN without tmtools or references."""
    try:
        import tmtools
    except ImportError:
        return float("nan")
    best = float("nan")
    for r in refs:
        res = tmtools.tm_align(ca.astype(np.float64), r.astype(np.float64), "G" * len(ca), "G" * len(r))
        best = float(res.tm_norm_chain1) if math.isnan(best) else max(best, float(res.tm_norm_chain1))
    return best


def novelty_tm(chains: Sequence[torch.Tensor], refs: Sequence[torch.Tensor]) -> float:
    """Mean over ``chains`` of the highest TM-score against ``refs`` (:func:`max_tm_to_references`);
    lower = more novel. Chains / refs: ``[L, 4, 3]`` backbones or ``[L, 3]`` CA traces."""
    ref_cas = [_ca(r) for r in refs]
    if not chains or not ref_cas:
        return float("nan")
    return float(np.mean([max_tm_to_references(_ca(c), ref_cas) for c in chains]))


def subsample_references(segments: Sequence[torch.Tensor], num: int, min_length: int = 1,
                         seed: int = 0) -> list[torch.Tensor]:
    """``num`` random segments (whole, at least ``min_length`` residues), for a CPU-sized
    novelty search; all of them when there are fewer."""
    pool = [s for s in segments if s.shape[0] >= min_length]
    return pool if len(pool) <= num else random.Random(seed).sample(pool, num)


@dataclass(frozen=True)
class BackboneMetrics:
    """Summary statistics of a set of backbones (means over chains unless said otherwise).

    Attributes:
        chains / mean_length: count and mean length;
        ca_ca_mean / ca_ca_std / ca_ca_in_range: over all consecutive pairs of all chains;
        clash_chains: fraction of chains with a clash; clashes_per_100: per 100 residues;
        rg / rg_ratio: radius of gyration (A) and its ratio to ``2.2 L^0.38``;
        helix / strand / coil: P-SEA fractions; pairwise_tm: mean pairwise TM-score;
        rama_favoured / rama_allowed: Ramachandran region fractions (NaN for CA-only chains);
        novelty_tm: mean highest TM-score against reference chains (NaN without references).
    """

    chains: int
    mean_length: float
    ca_ca_mean: float
    ca_ca_std: float
    ca_ca_in_range: float
    clash_chains: float
    clashes_per_100: float
    rg: float
    rg_ratio: float
    helix: float
    strand: float
    coil: float
    pairwise_tm: float
    rama_favoured: float = float("nan")
    rama_allowed: float = float("nan")
    novelty_tm: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


def backbone_metrics(chains: Sequence[torch.Tensor], max_tm_pairs: int = 2000,
                     novelty_refs: Sequence[torch.Tensor] | None = None) -> BackboneMetrics:
    """Metrics of ``[L, 4, 3]`` backbones or ``[L, 3]`` CA traces (each one continuous chain).

    ``novelty_refs``: reference chains (e.g. training segments, see
    :func:`subsample_references`) for ``novelty_tm``.

    Raises:
        InputError: no chains, or a chain shorter than 3 residues or with non-finite CA.
    """
    if not chains:
        raise InputError("no chains to evaluate")
    cas = [_ca(c) for c in chains]
    for ca in cas:
        if len(ca) < 3 or not np.isfinite(ca).all():
            raise InputError("every chain needs >= 3 residues with finite CA coordinates")
    d = np.concatenate([ca_ca_distances(ca) for ca in cas])
    clashes = np.array([clash_count(ca) for ca in cas])
    lengths = np.array([len(ca) for ca in cas])
    rg = np.array([radius_of_gyration(ca) for ca in cas])
    sse = np.array([sse_fractions(ca) for ca in cas])
    lo, hi = CA_CA_RANGE
    full = all(c.ndim == 3 and c.shape[1] >= 3 for c in chains)
    fav, allowed = ramachandran_fractions(chains) if full else (float("nan"), float("nan"))
    return BackboneMetrics(
        chains=len(cas), mean_length=float(lengths.mean()), ca_ca_mean=float(d.mean()),
        ca_ca_std=float(d.std()), ca_ca_in_range=float(((d >= lo) & (d <= hi)).mean()),
        clash_chains=float((clashes > 0).mean()), clashes_per_100=float(100 * clashes.sum() / lengths.sum()),
        rg=float(rg.mean()), rg_ratio=float(np.mean(rg / np.array([compact_rg(n) for n in lengths]))),
        helix=float(sse[:, 0].mean()), strand=float(sse[:, 1].mean()), coil=float(sse[:, 2].mean()),
        pairwise_tm=pairwise_tm(cas, max_tm_pairs), rama_favoured=fav, rama_allowed=allowed,
        novelty_tm=novelty_tm(chains, novelty_refs) if novelty_refs else float("nan"),
    )


def read_chains(directory: str | os.PathLike, min_length: int = 3,
                split_breaks: bool = True) -> list[torch.Tensor]:
    """Continuous backbone segments (``[L, 4, 3]``) of every chain of every structure file in a folder.

    Chains are always cut at residues missing N, CA or C. With ``split_breaks`` they are also cut
    where the C-N peptide bond is longer than :data:`~crystalflow.proteins.io.MAX_PEPTIDE_BOND`
    (right for experimental structures, whose breaks are unobserved residues); without it a
    generated chain is evaluated whole, so its breaks show up in the CA-CA statistics instead of
    being cut away.

    A file that cannot be read (or holds no protein chain) is skipped with a warning naming it.

    Raises:
        DataError: the folder holds no structure file; InputError: no usable segment.
    """
    from crystalflow.proteins.io import MAX_PEPTIDE_BOND, find_structure_files, read_backbones, split_segments

    files = find_structure_files(directory)
    if not files:
        raise DataError(f"no structure files (.pdb, .cif, optionally .gz) in {directory}")
    bond = MAX_PEPTIDE_BOND if split_breaks else math.inf
    out, failures = [], []
    for f in files:
        try:
            chains = read_backbones(f)
        except (InputError, DataError) as exc:
            failures.append(str(exc))
            warnings.warn(f"skipping {f}: {exc}")
            continue
        out += [s.coords for ch in chains for s in split_segments(ch, min_length, max_peptide_bond=bond)]
    if len(failures) == len(files):
        raise InputError(f"no readable protein structure in {directory}; first problem: {failures[0]}")
    if not out:
        raise InputError(f"no continuous protein segments of >= {min_length} residues in {directory}")
    return out


def length_matched_crops(segments: Sequence[torch.Tensor], length: int, num: int,
                         seed: int = 0) -> list[torch.Tensor]:
    """``num`` random windows of exactly ``length`` residues from segments at least that long.

    Windows are drawn from distinct segments while possible (then segments are reused).

    Raises:
        InputError: no segment is long enough.
    """
    long = [s for s in segments if s.shape[0] >= length]
    if not long:
        raise InputError(f"no reference segment has >= {length} residues")
    rng = random.Random(seed)
    order = rng.sample(range(len(long)), len(long))
    out = []
    for k in range(num):
        s = long[order[k % len(long)]]
        start = rng.randrange(s.shape[0] - length + 1)
        out.append(s[start:start + length])
    return out


_ROWS = [
    ("chains", "chains", "{:.0f}"), ("mean_length", "mean length", "{:.1f}"),
    ("ca_ca_in_range", "CA-CA in 3.6-4.0 A", "{:.3f}"), ("ca_ca_mean", "CA-CA mean (A)", "{:.3f}"),
    ("ca_ca_std", "CA-CA std (A)", "{:.3f}"), ("clash_chains", "chains with a CA clash", "{:.3f}"),
    ("clashes_per_100", "CA clashes / 100 res", "{:.2f}"), ("rg", "Rg (A)", "{:.2f}"),
    ("rg_ratio", "Rg / (2.2 L^0.38)", "{:.3f}"), ("helix", "helix (P-SEA)", "{:.3f}"),
    ("strand", "strand (P-SEA)", "{:.3f}"), ("coil", "coil (P-SEA)", "{:.3f}"),
    ("pairwise_tm", "pairwise TM (diversity, lower = more diverse)", "{:.3f}"),
    ("rama_favoured", "Ramachandran favoured", "{:.3f}"),
    ("rama_allowed", "Ramachandran allowed", "{:.3f}"),
    ("novelty_tm", "max TM to training (novelty, lower = more novel)", "{:.3f}"),
]


def format_table(columns: dict[str, dict]) -> str:
    """A markdown table with one column per named metrics dict (``BackboneMetrics.to_dict()``)."""
    names = list(columns)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, label, fmt in _ROWS:
        vals = [columns[n].get(key, float("nan")) for n in names]
        cells = ["nan" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)
                 for v in vals]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
