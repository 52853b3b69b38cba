"""``python -m crystalflow`` (also what ``torchrun -m crystalflow`` runs)."""

import sys

from crystalflow.cli import main

sys.exit(main())
