"""``pretrain``: train a world's generator (resumable Lightning fit, CSV log, sample grids) and
export its EMA weights as safetensors with a JSON card."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import CSVLogger
from safetensors.torch import save_file

from ..atomic import atomic_path, write_text
from ..engine.images import Row, figure, save_png, unit
from ..loggers import log_images
from .gan import WorldGAN, iterations_to_steps

log = logging.getLogger(__name__)


class SampleGrid(pl.Callback):
    """Every ``every`` iterations: a grid of the EMA generator's samples for fixed latents,
    written as ``samples/iter_NNNNNN.png`` and ``samples/latest.png`` and sent to the logger."""

    def __init__(self, out: Path, every: int = 250, n: int = 32) -> None:
        self.out, self.every, self.n = Path(out) / "samples", every, n

    def on_train_batch_end(self, trainer: pl.Trainer, module: WorldGAN, *args) -> None:
        it = module.iteration
        if it % self.every == 0 and trainer.is_global_zero:
            self.write(trainer, module, it)

    def write(self, trainer: pl.Trainer, module: WorldGAN, it: int) -> Path:
        z = torch.randn(self.n, module.generator.style_dim, generator=torch.Generator().manual_seed(1234))
        samples = unit(module.sample(z))
        rows = [Row(samples[i:i + 8], "EMA G") for i in range(0, len(samples), 8)]
        grid = figure(rows, f"{module.world.name}: the EMA generator at iteration {it:,} (fixed latents)")
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"iter_{it:06d}.png"
        for target in (path, self.out / "latest.png"):
            save_png(grid, target)
        log_images(trainer.logger, {"samples": grid}, step=it)
        return path


def export_generator(module: WorldGAN, path: Path, card: dict) -> None:
    """Write the EMA generator as safetensors and its card as JSON beside it (atomically)."""
    state = {k: v.detach().contiguous().clone() for k, v in module.ema.state_dict().items()}
    state["latent_avg"] = module.ema.mean_latent()
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    write_text(path.with_suffix(".json"), json.dumps(card, indent=1) + "\n")


def pretrain(world: str, out: str | Path, iterations: int = 10_000, batch_size: int = 16, seed: int = 0,
             sample_every: int = 250, checkpoint_every: int = 100, progress: bool = True,
             export: str | Path | None = None, oversample: str | None = None, lr: float = 2e-3,
             blur: float = 0.0) -> WorldGAN:
    """Train (or resume, from ``out/checkpoints/last.ckpt``) the generator of ``world`` for
    ``iterations`` G/D iterations; export the EMA generator to ``export`` (default
    ``out/generator.safetensors``). ``oversample="FLAG:SHARE[,FLAG:SHARE…]"``: see :meth:`WorldGAN.real_batch`. ``lr`` applies
    to a resumed run too (e.g. a lower one to settle a generator that swings between modes); ``blur``
    (pixels) is what D sees through, for a stage that teaches a fine rule (see :meth:`WorldGAN.judge`)."""
    out = Path(out)
    module = WorldGAN(world, batch_size=batch_size, seed=seed, oversample=oversample, lr=lr, blur=blur)
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0,
                                 every_n_train_steps=iterations_to_steps(checkpoint_every))
    grid = SampleGrid(out, every=sample_every)
    callbacks = [checkpoint, grid] + ([RichProgressBar()] if progress else [])
    trainer = pl.Trainer(max_steps=iterations_to_steps(iterations), accelerator="auto", devices=1,
                         logger=CSVLogger(out, name="logs"), callbacks=callbacks, enable_progress_bar=progress,
                         enable_model_summary=False, log_every_n_steps=20)
    last = out / "checkpoints" / "last.ckpt"
    if last.exists():
        log.info("pretrain %s: resuming from %s, on to iteration %d", world, last, iterations)
    else:
        log.info("pretrain %s: from scratch (no %s yet) to iteration %d, a checkpoint every %d", world, last,
                 iterations, checkpoint_every)
    trainer.fit(module, ckpt_path=str(last) if last.exists() else None)
    grid.write(trainer, module, module.iteration)
    card = {"world": world, "seed": seed, "iterations": module.iteration, "batch_size": batch_size,
            "train_seconds": round(module.train_seconds, 1), "generator": module.world.generator,
            "lr": lr, "blur": blur, "loss": {k: float(v) for k, v in trainer.callback_metrics.items()}}
    if oversample:
        card["oversample"] = oversample  # this run's real-batch targets (see WorldGAN.real_batch)
    export_generator(module, Path(export) if export else out / "generator.safetensors", card)
    return module
