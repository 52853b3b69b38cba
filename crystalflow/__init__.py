"""crystalflow: flow matching for crystals (and protein backbones).

The curated public API lives here; everything else is importable from its module.
"""

__version__ = "0.1.0"
