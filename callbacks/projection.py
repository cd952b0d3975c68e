"""ProjectedOptimizer: keeps an optimised weight on W0 + span(D) (the paper's projected
gradient descent, Sect. 3.4)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

from .protocol import Rewriting


class ProjectedOptimizer(pl.Callback):
    """After every ``every``-th optimizer step, and once when training ends, ask the module to
    set W ← W0 + (W − W0) P_D (``project()``; a no-op for a method that optimises Λ itself)."""

    def __init__(self, every: int = 10) -> None:
        if every < 1:
            raise ValueError(f"every must be ≥ 1, got {every}")
        self.every = every
        self._last_step = -1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Rewriting, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step != self._last_step and step % self.every == 0:
            pl_module.project()
        self._last_step = step

    def on_train_end(self, trainer: pl.Trainer, pl_module: Rewriting) -> None:
        pl_module.project()
