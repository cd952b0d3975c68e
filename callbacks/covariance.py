"""KeyCovariance: at fit start, the module's key statistics from the engine's service, each
process streaming its shard of the latents and the sums all-reduced under DDP."""

from __future__ import annotations

import os

import pytorch_lightning as pl

from lightning_rewrite.engine.stats import KeyStatistics

from .protocol import Rewriting


class KeyCovariance(pl.Callback):
    """Give the module (a :class:`Rewriting`) the second moment C = E[kkᵀ] of its layer's keys
    over ``samples`` latents, unless it has one; cached as :class:`KeyStatistics` says."""

    def __init__(self, samples: int = 1000, batch_size: int = 16, cache_dir: str | os.PathLike | bool | None = None,
                 progress: bool = True, products: str = "float32") -> None:
        self.statistics = KeyStatistics(samples, batch_size, cache_dir, progress, products)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Rewriting) -> None:
        if pl_module.key_moment is not None:
            return
        found = self.statistics.get(pl_module.hooked, pl_module.latents, trainer.global_rank, trainer.world_size,
                                    lambda t: trainer.strategy.reduce(t, reduce_op="sum"))
        pl_module.set_key_moment(found.moment)
