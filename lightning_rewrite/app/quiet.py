"""What the libraries print that a user of the commands cannot act on, silenced for the length
of a command (the filters are restored after it; library code that imports us is untouched)."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import Iterator

#: Warnings raised inside PyTorch, Lightning and W&B about their own internals or choices we
#: made on purpose (the generator stays in eval mode while Λ trains).
MESSAGES = (
    r".*torch\.jit\.script.* is deprecated.*",
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*module\(s\) in eval mode at the start of training.*",
    r".*does not have many workers.*",
    r".*The anonymous setting has no effect.*",
    r".*Detected pickle protocol.*",
    r".*`training_step` returned `None`.*",
    r".*Arguments other than a weight enum or `None` for 'weights' are deprecated.*",
    r".*The parameter 'pretrained' is deprecated.*",
)
#: Lightning's start-up notices (devices found, a logging-platform tip): informative, not actionable.
NOISY_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "pytorch_lightning.accelerators.cuda", "lightning.pytorch")


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence the messages above while a command runs; our own log lines stay."""
    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    with warnings.catch_warnings():
        for message in MESSAGES:
            warnings.filterwarnings("ignore", message=message)
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
