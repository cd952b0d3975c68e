"""Drawing samples in batches with a progress bar, and the ``sample`` command's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor, nn

from ..engine import images
from ..engine.latents import LatentSampler
from ..engine.prefix import SharedPrefix


def batches(generators: list[nn.Module], latents: LatentSampler, indices: range, batch_size: int = 50,
            progress: bool = True, what: str = "sampling", prefix: SharedPrefix | None = None) -> Iterator[list[Tensor]]:
    """Per batch of ``indices``, the images in [-1, 1] (CPU) of each generator for the same
    latents, with a progress bar: for loops that score samples without keeping them. With
    ``prefix``, the second generator reuses the first's computation up to its layer."""
    device = next(generators[0].parameters()).device
    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar, torch.no_grad():
        task = bar.add_task(what, total=len(indices))
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            z = latents.take(list(chunk)).to(device)
            drawn = prefix.draw(generators[:2], z) + [g(z) for g in generators[2:]] if prefix else [g(z) for g in generators]
            yield [image.clamp(-1, 1).cpu() for image in drawn]
            bar.advance(task, len(chunk))


def draw(generators: list[nn.Module], latents: LatentSampler, indices: range, batch_size: int = 50,
         progress: bool = True, what: str = "sampling") -> list[Tensor]:
    """Images in [-1, 1] (CPU) of each generator for the same latents ``indices``."""
    out = list(zip(*batches(generators, latents, indices, batch_size, progress, what)))
    return [torch.cat(parts) for parts in out]


def write_samples(samples: Tensor, indices: range, directory: Path, grid: bool, folder: bool,
                  label: str = "samples", title: str | None = None) -> list[Path]:
    """``samples.png`` (a grid: each image's sample index, the row labelled ``label``) and/or
    ``samples/NNNNNN.png`` (one file per sample index)."""
    written = []
    if grid:
        written.append(directory / "samples.png")
        row = images.Row(images.unit(samples), label, [f"#{i}" for i in indices])
        images.save_png(images.figure([row], title), written[-1])
    if folder:
        (directory / "samples").mkdir(exist_ok=True)
        for i, img in zip(indices, images.unit(samples)):
            written.append(directory / "samples" / f"{i:06d}.png")
            images.save_png(img, written[-1])
    return written
