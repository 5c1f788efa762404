"""``python -m recaudit``: the command-line interface (:func:`recaudit.cli.main`)."""

import sys

from .cli import main

sys.exit(main())
