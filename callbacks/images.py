"""EditImages: when a rewrite finishes, picture it — held-out samples before and after, the
request's selections, the context match — as PNGs and in the Trainer's logger."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from lightning_rewrite.engine import images
from lightning_rewrite.engine.prefix import SharedPrefix
from lightning_rewrite.loggers import log_images

from .protocol import Rewriting

PANELS = ("before_after", "selections", "context_match")


class EditImages(pl.Callback):
    """At fit end, draw ``n`` samples from index ``start`` (held out from the selections) with
    the unedited and the edited generator; write ``<name>.png`` under ``out`` (when given) and
    send the panels to the logger (W&B, TensorBoard), each labelled and titled ``title``. ``pictures`` keeps them, and ``samples``
    the unedited and edited images (in [-1, 1]), for the caller to measure. Samples are drawn
    ``batch_size`` at a time."""

    def __init__(self, out: str | os.PathLike | None = None, start: int = 1000, n: int = 16,
                 title: str | None = None, batch_size: int = 1) -> None:
        self.out = Path(out) if out is not None else None
        self.start, self.n, self.title, self.batch_size = start, n, title, batch_size
        self.pictures: dict[str, torch.Tensor] = {}
        self.samples: tuple[torch.Tensor, torch.Tensor] | None = None
        self.seconds = 0.0  # drawing and writing the pictures

    def on_fit_end(self, trainer: pl.Trainer, pl_module: Rewriting) -> None:
        if not trainer.is_global_zero:
            return
        start = time.perf_counter()
        base = pl_module.base_generator()
        shown = range(self.start, self.start + self.n)
        z = pl_module.latents.take(shown).to(pl_module.device)
        edited = pl_module.edited_generator().eval()
        prefix = SharedPrefix(pl_module.hooked.weight_name.rpartition(".")[0])  # everything before the layer once
        with torch.no_grad():  # one sample at a time by default: a 256-px batch of 16 held 2 GB of activations
            drawn = [prefix.draw([base, edited], z[i:i + self.batch_size]) for i in range(0, len(z), self.batch_size)]
            self.samples = tuple(torch.cat(images_).clamp(-1, 1).cpu() for images_ in zip(*drawn))
        before, after = (images.unit(s) for s in self.samples)
        chosen = images.selections(pl_module.request, base, pl_module.latents)
        pairs = images.before_after(before, after, shown)
        rows = [chosen, *pairs]
        self.pictures = {"before_after_samples": images.figure(pairs, self.title),
                         "selections": images.figure([chosen], self.title, legend=True)}
        if pl_module.directions is not None:
            heat = images.context_match(pl_module.hooked, pl_module.directions, pl_module.goal.key_star, z[:8], before[:8])
            match = images.Row(heat, "context match", [f"#{i}" for i in shown[:8]])
            self.pictures["context_match"] = images.figure([match], self.title)
            rows.append(match)
        self.pictures["before_after"] = images.figure(rows, self.title, legend=True)
        if self.out is not None:
            for name in PANELS:
                if name in self.pictures:
                    images.save_png(self.pictures[name], self.out / f"{name}.png")
        log_images(trainer.logger, self.pictures, step=trainer.global_step)
        self.seconds = time.perf_counter() - start
