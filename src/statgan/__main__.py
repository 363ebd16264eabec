"""``python -m statgan`` (also what ``torchrun -m statgan`` runs)."""

import sys

from .cli import main

sys.exit(main())
