"""``python -m trait_lab …``: see ``trait_lab.cli``."""

import sys

from trait_lab.cli import main

sys.exit(main())
