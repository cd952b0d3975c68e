"""``sample``: draw ``sample.n`` images from the model with ``model.edits`` applied (shared by the
Trainer's processes); the process of rank 0 writes ``<out>/sample/samples.png`` (a labelled grid)
and, when asked, one PNG per sample."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from rich.console import Console

from .assemble import load_model
from .rundir import run_directory
from .sampling import Drawing, drawing_trainer, gather, write_samples


def run(cfg: DictConfig, overrides: list[str], out: Path, console: Console) -> None:
    model = load_model(cfg, with_segmenter=False)
    idx = range(cfg.sample.start, cfg.sample.start + cfg.sample.n)
    drawn: dict[int, torch.Tensor] = {}
    everything: list[dict[int, torch.Tensor]] = []
    trainer = drawing_trainer(cfg)
    # one sample per forward pass (images.draw_alone): sample i's pixels do not depend on sample.n or start
    trainer.test(Drawing([model.generator], model.latents, idx, 1,
                         lambda chunk, images: drawn.update(zip(chunk, images[0].cpu())),
                         lambda: everything.extend(gather(drawn))), verbose=False)
    if not trainer.is_global_zero:
        return
    merged = {i: image for part in everything for i, image in part.items()}
    samples = torch.stack([merged[i] for i in idx])
    with run_directory(out / "sample", "sample", nested=True) as tmp:
        label = f"{len(model.edits)} edit{'s' if len(model.edits) != 1 else ''}" if model.edits else "unedited"
        title = f"{cfg.recipe}: samples {idx.start} to {idx.stop - 1}, " + (
            "edited by " + ", ".join(e.spec.get("recipe") or e.describe() for e in model.edits) if model.edits else "unedited")
        written = write_samples(samples, idx, tmp, cfg.sample.grid, cfg.sample.folder, label, title)
    console.print(f"{len(idx)} samples ({label}) → {out / 'sample'} ({len(written)} files, {trainer.world_size} "
                  f"process{'es' if trainer.world_size > 1 else ''})")
