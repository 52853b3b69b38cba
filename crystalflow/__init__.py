"""crystalflow: flow matching for crystals (and protein backbones).

The curated public API (imported lazily, so ``import crystalflow`` stays cheap):

- :func:`predict` -- candidate structures of a composition (optionally in a space group);
- :func:`predict_from_csv` -- every row of a CDVAE-layout CSV to CIF files;
- :func:`generate` -- new crystals in a space group / chemical system (de-novo generation);
- :func:`load_pretrained` -- a flow and its checkpoint (bundled by default);
- :mod:`crystalflow.metrics` -- the field's evaluation metrics.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "predict": ("crystalflow.crystal_tasks.prediction", "predict"),
    "predict_from_csv": ("crystalflow.crystal_tasks.prediction", "predict_from_csv"),
    "load_pretrained": ("crystalflow.pretrained", "load_pretrained"),
    "generate": ("crystalflow.crystal_tasks.generation", "generate"),
    "Crystal": ("crystalflow.crystals", "Crystal"),
    "CrystalBatch": ("crystalflow.crystals", "CrystalBatch"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'crystalflow' has no attribute {name!r}")
