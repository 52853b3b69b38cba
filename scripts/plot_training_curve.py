"""Plot validation match rate (and training loss) against wall-clock time from train logs.

Usage: python scripts/plot_training_curve.py runs/perov_5/log.csv runs/mp_20/log.csv --out docs/training_curve.png
Reads the ``log.csv`` files that ``crystalflow train`` writes; prints one JSON line per run with
the final and best validation match rates.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for log in args.logs:
        frame = pd.read_csv(log)
        name = Path(log).parent.name
        val = frame.dropna(subset=["val_score"])
        ax1.plot(val.seconds / 60, 100 * val.val_score, marker="o", label=name)
        ax2.plot(frame.seconds / 60, frame.loss.rolling(50, min_periods=1).mean(), label=name)
        print(json.dumps({"run": name, "steps": int(frame.step.iloc[-1]),
                          "minutes": round(float(frame.seconds.iloc[-1]) / 60, 1),
                          "last_val_match_rate": float(val.val_score.iloc[-1]) if len(val) else None,
                          "best_val_match_rate": float(val.val_score.max()) if len(val) else None}))
    ax1.set(xlabel="training time (min, this 2-core CPU)", ylabel="val match rate (%)",
            title="CSP match rate on the validation slice")
    ax2.set(xlabel="training time (min)", ylabel="CFM loss (rolling mean)", yscale="log",
            title="training loss")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)


if __name__ == "__main__":
    main()
