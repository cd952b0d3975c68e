"""``python -m lightning_rewrite COMMAND key=value ...``."""

import sys

from .app.cli import main

sys.exit(main())
