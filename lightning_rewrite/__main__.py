"""``python -m lightning_rewrite COMMAND key=value ...``."""

import sys

from .cli import main

sys.exit(main())
