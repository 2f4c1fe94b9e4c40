"""``python -m segzoo``: the same as the ``segzoo`` command."""

import sys

from .cli import main

sys.exit(main())
