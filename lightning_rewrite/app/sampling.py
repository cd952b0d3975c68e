"""Drawing samples in batches: in one process with a progress bar (:func:`batches`), or across
processes and machines with Lightning's test loop (:class:`Drawing`: the same batches as one
process, dealt round-robin to the processes), and the ``sample`` command's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from omegaconf import DictConfig
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..engine import images
from ..engine.latents import LatentSampler
from ..engine.prefix import SharedPrefix


def draw_batch(generators: Sequence[nn.Module], z: Tensor, prefix: SharedPrefix | None = None) -> list[Tensor]:
    """Each generator's images of ``z`` in [-1, 1]; with ``prefix`` the second reuses the first's
    computation up to its layer."""
    drawn = prefix.draw(list(generators[:2]), z) + [g(z) for g in generators[2:]] if prefix else [g(z) for g in generators]
    return [image.clamp(-1, 1) for image in drawn]


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
            yield [image.cpu() for image in draw_batch(generators, latents.take(list(chunk)).to(device), prefix)]
            bar.advance(task, len(chunk))


def draw(generators: list[nn.Module], latents: LatentSampler, indices: range, batch_size: int = 50,
         progress: bool = True, what: str = "sampling") -> list[Tensor]:
    """Images in [-1, 1] (CPU) of each generator for the same latents ``indices``."""
    out = list(zip(*batches(generators, latents, indices, batch_size, progress, what)))
    return [torch.cat(parts) for parts in out]


#: What a :class:`Drawing` hands each batch to: its sample indices and each generator's images
#: (on the process's device).
Consumer = Callable[[list[int], list[Tensor]], None]


class Drawing(pl.LightningModule):
    """Draws ``indices`` through ``generators`` in ``trainer.test``. The batches are those of one
    process (``batch_size`` consecutive indices), dealt round-robin to the processes, so every
    image is computed exactly as in one process; each batch goes to ``consume`` in the process
    that drew it; ``finish`` runs in every process at the end, while the processes can still
    exchange results (metrics compute, :func:`gather`)."""

    def __init__(self, generators: Sequence[nn.Module], latents: LatentSampler, indices: Sequence[int], batch_size: int,
                 consume: Consumer, finish: Callable[[], None] = lambda: None, prefix: str | None = None) -> None:
        super().__init__()
        self.generators = nn.ModuleList(generators)
        self.latents = latents
        self.chunks = [list(indices[s:s + batch_size]) for s in range(0, len(indices), batch_size)]
        self.consume, self.finish = consume, finish
        self.prefix = SharedPrefix(prefix) if prefix else None

    def test_dataloader(self) -> DataLoader:
        mine = self.chunks[self.global_rank::self.trainer.world_size]
        return DataLoader(mine, batch_size=None, shuffle=False, collate_fn=lambda chunk: chunk)

    def test_step(self, chunk: list[int], batch_idx: int) -> None:
        z = self.latents.take(chunk).to(self.device)
        self.consume(chunk, draw_batch(self.generators, z, self.prefix))

    def on_test_epoch_end(self) -> None:
        self.finish()


def gather(value: Any) -> list[Any]:
    """``value`` of every process, in rank order (a list of one outside distributed runs)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def drawing_trainer(cfg: DictConfig) -> pl.Trainer:
    """The Trainer that runs a :class:`Drawing`: ``trainer.accelerator``, ``devices``,
    ``num_nodes``, ``strategy`` and ``precision`` as given; the sharding is the Drawing's own."""
    from pytorch_lightning.callbacks import RichProgressBar

    t = cfg.trainer
    return pl.Trainer(accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
                      precision=t.precision, logger=False, enable_checkpointing=False, enable_model_summary=False,
                      enable_progress_bar=bool(cfg.progress), callbacks=[RichProgressBar()] if cfg.progress else [],
                      use_distributed_sampler=False)


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
