"""``python -m lightning_rewrite COMMAND key=value ...``."""

import sys

try:
    from .app.cli import main
except KeyboardInterrupt:  # Ctrl-C while the libraries import: nothing was started
    sys.exit(130)

sys.exit(main())
