"""Analysis -> reconstruction round trip on a CSV split (CDVAE layout), as a check of the library.

Run ``python -m crystalflow.symmetry.roundtrip --rows 500`` (default: MP-20 test split) to print
one JSON line with the match rate under the CSP benchmark's StructureMatcher.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from crystalflow.errors import CrystalflowError
from crystalflow.symmetry.analysis import DEFAULT_SYMPREC, analyze_structure, reconstruct_structure

__all__ = ["RoundTripResult", "round_trip", "DEFAULT_SPLIT"]

DEFAULT_SPLIT = Path(__file__).resolve().parents[3] / "shared" / "data" / "mp_20" / "test.csv.gz"


@dataclass(frozen=True)
class RoundTripResult:
    """Outcome of a round trip over ``total`` rows.

    Attributes:
        total: rows tried.
        matched: rows whose reconstruction matches the original.
        failed_ids: material ids that did not match or could not be analysed.
        seconds: wall time of analysis + reconstruction (matching excluded).
    """

    total: int
    matched: int
    failed_ids: tuple[str, ...]
    seconds: float

    @property
    def rate(self) -> float:
        return self.matched / max(self.total, 1)


def round_trip(
    csv_path: str | Path, rows: int, symprec: float = DEFAULT_SYMPREC, seed: int | None = 0
) -> RoundTripResult:
    """Analyse, reconstruct and match ``rows`` structures of a CSV split.

    Args:
        csv_path: CSV (optionally gzipped) with ``material_id`` and ``cif`` columns.
        rows: number of rows (a random sample with ``seed``, or the first rows if seed is None).
        symprec: spglib tolerance.
        seed: sampling seed.

    Returns:
        :class:`RoundTripResult`.
    """
    frame = pd.read_csv(csv_path, usecols=["material_id", "cif"])
    if seed is None:
        frame = frame.head(rows)
    else:
        frame = frame.sample(n=min(rows, len(frame)), random_state=seed)
    matcher = StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)
    matched, failed, seconds = 0, [], 0.0
    for material_id, cif in zip(frame["material_id"], frame["cif"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            original = Structure.from_str(cif, fmt="cif")
        start = time.perf_counter()
        try:
            crystal = analyze_structure(original, symprec=symprec)
            rebuilt = reconstruct_structure(
                crystal.space_group,
                crystal.lattice,
                crystal.template.letters,
                crystal.representatives,
                crystal.template.atom_types,
            )
        except CrystalflowError:
            failed.append(str(material_id))
            continue
        finally:
            seconds += time.perf_counter() - start
        if matcher.fit(original, rebuilt):
            matched += 1
        else:
            failed.append(str(material_id))
    return RoundTripResult(len(frame), matched, tuple(failed), seconds)


def main(argv: list[str] | None = None) -> None:
    """Command line: print one JSON line with the round-trip match rate."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--csv", default=str(DEFAULT_SPLIT), help="CSV split (CDVAE layout)")
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--symprec", type=float, default=DEFAULT_SYMPREC)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = round_trip(args.csv, args.rows, args.symprec, args.seed)
    print(
        json.dumps(
            {
                "csv": str(Path(args.csv).resolve()),
                "rows": result.total,
                "matched": result.matched,
                "rate": round(result.rate, 4),
                "failed_ids": list(result.failed_ids),
                "analysis_seconds": round(result.seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
