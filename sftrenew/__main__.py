"""`python -m sftrenew`: the same as `sftrenew` (used by the worker supervisor to start its child)."""

import sys

from sftrenew import main

sys.exit(main())
