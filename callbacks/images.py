"""EditImages: when a rewrite finishes, picture it — held-out samples before and after, the
request's selections, the context match — as PNGs and in the Trainer's logger."""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl
import torch

from lightning_rewrite import images
from lightning_rewrite.loggers import log_images

PANELS = ("before_after", "selections", "context_match")


class EditImages(pl.Callback):
    """At fit end, draw ``n`` samples from index ``start`` (held out from the selections) with
    the unedited and the edited generator; write ``<name>.png`` under ``out`` (when given) and
    send the panels to the logger (W&B, TensorBoard). ``pictures`` keeps them, and ``samples``
    the unedited and edited images (in [-1, 1]), for the caller to measure."""

    def __init__(self, out: str | os.PathLike | None = None, start: int = 1000, n: int = 16) -> None:
        self.out = Path(out) if out is not None else None
        self.start, self.n = start, n
        self.pictures: dict[str, torch.Tensor] = {}
        self.samples: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        base = pl_module.base_generator()
        z = pl_module.latents.take(range(self.start, self.start + self.n)).to(pl_module.device)
        edited = pl_module.edited_generator().eval()
        with torch.no_grad():
            self.samples = (base(z).clamp(-1, 1).cpu(), edited(z).clamp(-1, 1).cpu())
        before, after = (images.unit(s) for s in self.samples)
        chosen = images.selections(pl_module.request, base, pl_module.latents)
        pairs = images.before_after(before, after)
        rows = [chosen, pairs]
        self.pictures = {"before_after_samples": images.figure([pairs]), "selections": images.figure([chosen])}
        if pl_module.method == "rank_s":
            heat = images.context_match(pl_module.hooked, pl_module.directions, pl_module.goal.key_star, z[:8], before[:8])
            self.pictures["context_match"] = images.figure([heat])
            rows.append(heat)
        self.pictures["before_after"] = images.figure(rows)
        if self.out is not None:
            for name in PANELS:
                if name in self.pictures:
                    images.save_png(self.pictures[name], self.out / f"{name}.png")
        log_images(trainer.logger, self.pictures, step=trainer.global_step)
