"""``python -m microgradx.cli``: the same as the ``microgradx`` command."""

import sys

from . import main

sys.exit(main())
