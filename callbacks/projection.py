"""ProjectedOptimizer: keeps an optimised weight on W0 + span(D) (the paper's projected
gradient descent, Sect. 3.4)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from lightning_rewrite import memory


class ProjectedOptimizer(pl.Callback):
    """After every ``every``-th optimizer step, and once when training ends, set
    W ← W0 + (W − W0) P_D on the module's ``projection()`` target.

    The module's ``projection()`` returns (W, W0, D, key axis), or None when its weight
    needs no projection (then this callback does nothing).
    """

    def __init__(self, every: int = 10) -> None:
        if every < 1:
            raise ValueError(f"every must be ≥ 1, got {every}")
        self.every = every
        self._last_step = -1

    def project(self, pl_module: pl.LightningModule) -> None:
        target = pl_module.projection() if hasattr(pl_module, "projection") else None
        if target is None:
            return
        weight, w0, directions, key_axis = target
        with torch.no_grad():
            weight.copy_(memory.project_weight(weight, w0, directions, key_axis))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step != self._last_step and step % self.every == 0:
            self.project(pl_module)
        self._last_step = step

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.project(pl_module)
