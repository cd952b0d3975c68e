"""Run by test_ddp.py: KeyCovariance under a 2-process CPU (gloo) DDP fit; rank 0 saves C."""

from __future__ import annotations

import sys

import pytorch_lightning as pl
import torch

from lightning_rewrite import RewriteModule
from lightning_rewrite.callbacks import KeyCovariance
from lightning_rewrite.models.blocks import BlocksGenerator, domes_to_trees


def main(out: str, samples: int) -> None:
    generator = BlocksGenerator().double().eval()  # float64 keys: no batch-size rounding
    module = RewriteModule(generator, "layer3.0", domes_to_trees(generator))
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[KeyCovariance(samples=samples, batch_size=7, cache_dir=False, progress=False)])
    trainer.fit(module)
    if trainer.global_rank == 0:
        torch.save({"sum": module.key_moment.sum.cpu(), "count": module.key_moment.count,
                    "world": trainer.world_size}, out)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
