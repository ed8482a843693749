"""`python -m reformer`: the same as the `reformer` console script (and what torchrun's `-m reformer` runs)."""

import sys

from .cli import main

sys.exit(main())
