"""``python -m reidmodels`` (what ``torchrun -m reidmodels train ...`` runs)."""

import sys

from .cli import main

sys.exit(main())
