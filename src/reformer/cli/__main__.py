"""`python -m reformer.cli`: the same as the `reformer` console script."""

import sys

from . import main

sys.exit(main())
