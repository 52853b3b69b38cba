"""Template-based crystal structure prediction: a library of known crystals (space group + Wyckoff
orbits), a proposer that substitutes a target composition's elements into them, and the bundled
MP-20 library.

The bundled library (``BUNDLED_LIBRARY``) is built from MP-20 ``train`` plus ``val`` without its
first :data:`SELECTION_ROWS` rows (kept for selection); no test crystal is in it.
"""

from pathlib import Path

from crystalflow.templates.library import (
    LIBRARY_VERSION,
    LibraryEntry,
    TemplateLibrary,
    anonymous_key,
    centering,
    load_library,
)
from crystalflow.templates.proposer import Proposal, mendeleev_numbers, propose

#: the bundled template library (MP-20 train + val minus the selection slice)
BUNDLED_LIBRARY = Path(__file__).resolve().parent.parent / "data" / "templates" / "mp_20.pt"
#: first rows of MP-20 val.csv held out of the bundled library for selecting settings
SELECTION_ROWS = 1000

__all__ = ["BUNDLED_LIBRARY", "SELECTION_ROWS", "LIBRARY_VERSION", "LibraryEntry",
           "TemplateLibrary", "Proposal", "anonymous_key", "centering", "load_library",
           "mendeleev_numbers", "propose"]
