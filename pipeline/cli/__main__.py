"""`python -m pipeline.cli`: the same as `sftrenew` (used by the worker supervisor to start its child)."""

import sys

from pipeline.cli import main

sys.exit(main())
