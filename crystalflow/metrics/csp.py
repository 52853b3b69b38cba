"""Crystal structure prediction (CSP) metrics: match rate and RMSE against ground truth.

Definition (CDVAE's ``RecEval`` in ``scripts/compute_metrics.py``, used by DiffCSP and FlowMM):
a prediction matches its reference when pymatgen's ``StructureMatcher(stol=0.5, angle_tol=10,
ltol=0.3)`` finds a mapping; its error is ``get_rms_dist(pred, ref)[0]`` (RMS displacement
normalised by ``(V / N) ** (1/3)``). Only *valid* predictions count (CDVAE structural and SMACT
validity, :func:`crystalflow.metrics.validity.is_valid`); the match rate is the fraction of
references matched and the RMSE the mean over matched references. With ``k`` samples per reference
(DiffCSP's multi-sample evaluation) a reference is matched when any of its valid samples matches,
and its error is the smallest RMS over those. The rate *without* the validity filter (as OMatG
reports it) is given beside it.

One deviation, for speed: CDVAE and DiffCSP also mark a prediction invalid when its CrystalNN
fingerprint cannot be computed (a second per structure); that rare case is not checked here.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Sequence

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from crystalflow.metrics._parallel import parallel_map
from crystalflow.metrics.validity import is_valid

__all__ = ["CSPMetrics", "aggregate_csp_scores", "csp_matcher", "csp_metrics", "rms_match", "score_cif_task", "score_samples"]

#: StructureMatcher tolerances of the CSP benchmark (CDVAE / DiffCSP / FlowMM)
CSP_STOL = 0.5
CSP_ANGLE_TOL = 10.0
CSP_LTOL = 0.3


@functools.lru_cache(maxsize=1)
def csp_matcher() -> StructureMatcher:
    """``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)``, as the CSP benchmark uses it."""
    return StructureMatcher(stol=CSP_STOL, angle_tol=CSP_ANGLE_TOL, ltol=CSP_LTOL)


def rms_match(
    pred: Structure, ref: Structure, matcher: StructureMatcher | None = None
) -> float | None:
    """Normalised RMS displacement between a prediction and its reference, or ``None`` if no match.

    ``matcher.get_rms_dist(pred, ref)[0]`` with the CSP matcher by default; a matcher failure
    (degenerate cell, empty structure) counts as no match, as in CDVAE.
    """
    matcher = matcher or csp_matcher()
    try:
        result = matcher.get_rms_dist(pred, ref)
    except Exception:
        return None
    if result is None:
        return None
    value = float(result[0])
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class CSPMetrics:
    """CSP match rate and RMSE, with and without CDVAE's validity filter.

    Attributes:
        match_rate: fraction of references matched by at least one *valid* sample.
        rmse: mean over those references of the smallest RMS distance (``None`` if none matched).
        match_rate_unfiltered: the same rate counting every sample, valid or not.
        rmse_unfiltered: the RMSE that goes with ``match_rate_unfiltered``.
        num_references: number of references.
        num_samples: number of predicted structures evaluated (missing ones excluded).
        num_valid_samples: how many of them are valid.
        num_missing: references without any predicted structure (counted as misses).
        max_samples_per_reference: the largest ``k``.
    """

    match_rate: float
    rmse: float | None
    match_rate_unfiltered: float
    rmse_unfiltered: float | None
    num_references: int
    num_samples: int
    num_valid_samples: int
    num_missing: int
    max_samples_per_reference: int

    def to_dict(self) -> dict[str, float | int | None]:
        """The metrics as a JSON-ready dict (``None`` where no RMSE is defined)."""
        return asdict(self)


def score_samples(
    samples: Sequence[Structure | None], reference: Structure
) -> list[tuple[bool, float | None]]:
    """``(is_valid(sample), rms_match(sample, reference))`` of each non-missing sample."""
    matcher = csp_matcher()
    return [
        (is_valid(sample), rms_match(sample, reference, matcher))
        for sample in samples
        if sample is not None
    ]


def score_cif_task(
    task: tuple[str, Sequence[str], float | None],
) -> tuple[list[tuple[bool, float | None]], list[tuple[str, str]], bool | None]:
    """Worker: parse a reference CIF string and its prediction files, then :func:`score_samples`.

    Args:
        task: ``(reference CIF text, prediction file paths, symprec or None)``; with a
            ``symprec`` the first prediction is also checked with
            :func:`~crystalflow.metrics.symmetry.keeps_space_group`, on the structures parsed here.

    Returns:
        The scores of the readable predictions, ``(path, reason)`` of the unreadable ones, and
        whether the first prediction keeps the reference's space group (``None`` without a
        ``symprec``; ``False`` when the first prediction is missing or unreadable).

    Raises:
        DataError: the reference CIF is unreadable.
    """
    from crystalflow.errors import DataError, InputError
    from crystalflow.metrics.io import parse_cif, read_cif_file_or_error

    ref_text, paths, symprec = task
    try:
        reference = parse_cif(ref_text)
    except InputError as exc:
        raise DataError(f"reference structure: {exc}") from None
    samples, bad = [], []
    for path in paths:
        result = read_cif_file_or_error(path)
        if isinstance(result, str):
            bad.append((str(path), result))
            samples.append(None)
        else:
            samples.append(result)
    same_group = None
    if symprec is not None:
        from crystalflow.metrics.symmetry import keeps_space_group

        same_group = keeps_space_group(samples[0] if samples else None, reference, symprec)
    return score_samples(samples, reference), bad, same_group


def score_reference_task(task: tuple[str, Sequence[str], float | None]) -> tuple | str:
    """Worker: :func:`score_cif_task`, or the reason (a string) when the reference CIF itself is
    unreadable, so that one bad reference row skips that row instead of aborting the evaluation."""
    from crystalflow.errors import DataError

    try:
        return score_cif_task(task)
    except DataError as exc:
        return str(exc)


def _score_reference(task: tuple[Sequence[Structure | None], Structure]) -> list[tuple[bool, float | None]]:
    """Worker: :func:`score_samples` of one ``(samples, reference)`` task."""
    return score_samples(*task)


def _mean(values: list[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def csp_metrics(
    predictions: Sequence[Sequence[Structure | None]],
    references: Sequence[Structure],
    *,
    workers: int = 1,
    progress: bool = True,
) -> CSPMetrics:
    """Match rate and RMSE of ``k >= 1`` predictions per reference (CDVAE / DiffCSP definition).

    Args:
        predictions: for each reference, its predicted structures; ``None`` entries (and empty
            lists) are missing predictions and count as misses.
        references: the ground-truth structures, aligned with ``predictions``.
        workers: processes for the StructureMatcher calls (the cost); 1 runs serially.
        progress: show a progress bar.

    Returns:
        The filtered and unfiltered rates and RMSEs.

    Raises:
        ValueError: ``predictions`` and ``references`` differ in length, or are empty.
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} prediction lists for {len(references)} references"
        )
    if not references:
        raise ValueError("no references to evaluate")
    tasks = [(list(p), r) for p, r in zip(predictions, references)]
    scores = parallel_map(_score_reference, tasks, workers=workers, progress=progress, desc="csp match")
    return aggregate_csp_scores(scores, max((len(p) for p in predictions), default=0))


def aggregate_csp_scores(
    scores: Sequence[Sequence[tuple[bool, float | None]]], max_samples_per_reference: int
) -> CSPMetrics:
    """CSP metrics from per-reference lists of ``(sample is valid, rms or None)``.

    The building block of :func:`csp_metrics`, exposed for callers that score samples themselves
    (e.g. the CLI, which parses and scores in the same worker).
    """
    best_valid: list[float] = []
    best_any: list[float] = []
    num_samples = num_valid = num_missing = 0
    for per_ref in scores:
        num_samples += len(per_ref)
        num_valid += sum(bool(v) for v, _ in per_ref)
        if not per_ref:
            num_missing += 1
        valid_rms = [r for v, r in per_ref if v and r is not None]
        any_rms = [r for _, r in per_ref if r is not None]
        if valid_rms:
            best_valid.append(min(valid_rms))
        if any_rms:
            best_any.append(min(any_rms))
    n = len(scores)
    if n == 0:
        raise ValueError("no references to evaluate")
    return CSPMetrics(
        match_rate=len(best_valid) / n,
        rmse=_mean(best_valid),
        match_rate_unfiltered=len(best_any) / n,
        rmse_unfiltered=_mean(best_any),
        num_references=n,
        num_samples=num_samples,
        num_valid_samples=int(num_valid),
        num_missing=num_missing,
        max_samples_per_reference=int(max_samples_per_reference),
    )
