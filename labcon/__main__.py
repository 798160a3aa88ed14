"""`python -m labcon` (also what `torchrun -m labcon run` starts)."""

import sys

from labcon.cli import main

sys.exit(main())
