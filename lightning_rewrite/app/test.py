"""``test``: draw held-out samples with and without an edit (same latents), in batches, score both
with the world's segmenter through the metrics in ``metrics/``, and write what changed: JSON, and
grids of the samples that changed most and least."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from rich.console import Console

from ..atomic import write_text
from ..engine import images
from ..engine.edit import Edit
from ..vocabulary import SHOWN
from .assemble import load_model
from .measures import EditMeasures
from .report import table
from .rundir import run_directory
from .sampling import Drawing, drawing_trainer, gather

log = logging.getLogger(__name__)


def run(cfg: DictConfig, overrides: list[str], out: Path, console: Console) -> None:
    edit = Path(cfg.test.edit) if cfg.test.edit else out / "edit.safetensors"
    metrics = test(cfg, out / "test", edit)
    if metrics is not None:
        console.print(table(f"test {cfg.recipe}: {out / 'test'}", metrics))


def test(cfg: DictConfig, out: Path, edit_path: Path) -> dict[str, Any] | None:
    """Measure the edit at ``edit_path`` on ``test.n`` held-out samples shared by the Trainer's
    processes; the process of rank 0 writes under ``out`` and gets the metrics, the others None."""
    model = load_model(cfg)
    edit = Edit.load(edit_path)
    edited = edit.apply(copy.deepcopy(model.generator), force=cfg.model.force)
    measures = EditMeasures(cfg, model)
    idx = range(cfg.test.start, cfg.test.start + cfg.test.n)
    pairs = measures.pair_generators(model.generator, edited)
    changes: dict[int, float] = {}
    result: dict[str, Any] = {}

    def consume(chunk: list[int], drawn: list[torch.Tensor]) -> None:
        before, after, *paired = drawn
        measures.to(before.device).update(before, after, paired)
        changes.update(zip(chunk, (after - before).abs().flatten(1).mean(1).tolist()))

    def finish() -> None:
        result["metrics"] = measures.compute()  # every process's states, reduced
        result["changes"] = {i: c for part in gather(changes) for i, c in part.items()}

    layer = edit.changes[0].name.rpartition(".")[0] if len(edit.changes) == 1 else None
    trainer = drawing_trainer(cfg)
    trainer.test(Drawing([model.generator, edited, *pairs], model.latents, idx, cfg.test.batch_size, consume, finish,
                         layer), verbose=False)
    if not trainer.is_global_zero:
        return None
    change = torch.tensor([result["changes"][i] for i in idx])
    device = next(model.generator.parameters()).device
    metrics = {"edit": str(edit_path), "recipe": cfg.recipe, "layer": edit.layer, "n": len(idx),
               "world_size": trainer.world_size, "mean_abs_change": float(change.double().mean()), **result["metrics"]}
    order = change.argsort(descending=True, stable=True)
    with run_directory(out, "test", nested=True) as tmp, torch.no_grad():
        for name, pick in (("largest_change", order[:SHOWN]), ("smallest_change", order.flip(0)[:SHOWN])):
            shown = [idx[int(i)] for i in pick]
            z = model.latents.take(shown).to(device)
            rows = images.before_after(*(images.unit(images.draw_alone(g, z)) for g in (model.generator, edited)), shown)
            title = f"{cfg.recipe}: the {SHOWN} test samples of {len(idx)} with the {name.replace('_', ' ')} ({edit.describe()})"
            images.save_png(images.figure(rows, title), tmp / f"{name}.png")
        if pairs:  # rows: unedited without / with the cause, then edited without / with it
            shown = list(idx[:SHOWN])
            z = model.latents.take(shown).to(device)
            labels = ("unedited, without", "unedited, with", "edited, without", "edited, with")
            rows = [images.Row(images.unit(images.draw_alone(g, z)), label, [f"#{i}" for i in shown])
                    for g, label in zip(pairs, labels)]
            title = f"{cfg.recipe}: one scene without and with the cause, before and after the edit ({edit.describe()})"
            images.save_png(images.figure(rows, title), tmp / "rule_pairs.png")
        write_text(tmp / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    return metrics
