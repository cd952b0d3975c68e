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
from ..engine.prefix import SharedPrefix
from ..vocabulary import SHOWN
from .assemble import load_model
from .measures import EditMeasures
from .report import table
from .rundir import run_directory
from .sampling import batches

log = logging.getLogger(__name__)


def run(cfg: DictConfig, overrides: list[str], out: Path, console: Console) -> None:
    edit = Path(cfg.test.edit) if cfg.test.edit else out / "edit.safetensors"
    console.print(table(f"test {cfg.recipe}: {out / 'test'}", test(cfg, out / "test", edit)))


def test(cfg: DictConfig, out: Path, edit_path: Path) -> dict[str, Any]:
    """Measure the edit at ``edit_path`` on ``test.n`` held-out samples; write under ``out``."""
    model = load_model(cfg)
    edit = Edit.load(edit_path)
    edited = edit.apply(copy.deepcopy(model.generator), force=cfg.model.force)
    measures = EditMeasures(cfg, model)
    idx = range(cfg.test.start, cfg.test.start + cfg.test.n)
    changes = []
    pairs = measures.pair_generators(model.generator, edited)
    generators = [model.generator, edited, *pairs]
    prefix = SharedPrefix(edit.changes[0].name.rpartition(".")[0]) if len(edit.changes) == 1 else None
    for before, after, *paired in batches(generators, model.latents, idx, cfg.test.batch_size, cfg.progress,
                                          "test samples", prefix):
        measures.update(before, after, paired)
        changes.append((after - before).abs().flatten(1).mean(1))
    change = torch.cat(changes)
    device = next(model.generator.parameters()).device
    metrics = {"edit": str(edit_path), "recipe": cfg.recipe, "layer": edit.layer, "n": len(idx),
               "mean_abs_change": float(change.mean()), **measures.compute()}
    order = change.argsort(descending=True)
    with run_directory(out, "test", nested=True) as tmp, torch.no_grad():
        for name, pick in (("largest_change", order[:SHOWN]), ("smallest_change", order.flip(0)[:SHOWN])):
            shown = [idx[int(i)] for i in pick]
            z = model.latents.take(shown).to(device)
            rows = images.before_after(images.unit(model.generator(z)), images.unit(edited(z)), shown)
            title = f"{cfg.recipe}: the {SHOWN} test samples of {len(idx)} with the {name.replace('_', ' ')} ({edit.describe()})"
            images.save_png(images.figure(rows, title), tmp / f"{name}.png")
        if pairs:  # rows: unedited without / with the cause, then edited without / with it
            shown = list(idx[:SHOWN])
            z = model.latents.take(shown).to(device)
            labels = ("unedited, without", "unedited, with", "edited, without", "edited, with")
            rows = [images.Row(images.unit(g(z)), label, [f"#{i}" for i in shown]) for g, label in zip(pairs, labels)]
            title = f"{cfg.recipe}: one scene without and with the cause, before and after the edit ({edit.describe()})"
            images.save_png(images.figure(rows, title), tmp / "rule_pairs.png")
        write_text(tmp / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    return metrics
